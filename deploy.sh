#!/usr/bin/env bash
# deploy.sh builds cgichat's two programs as static binaries and installs
# them, the page and the web server configuration into a document root,
# locally or over rsync. Run ./deploy.sh --help for what it does.
set -euo pipefail
export LC_ALL=C

usage() {
  cat <<'EOF'
Usage: ./deploy.sh [options] TARGET

Builds post and stream as static Linux binaries for TARGET's machine and
installs them as TARGET/cgi-bin/post and TARGET/cgi-bin/stream, the page
(everything in public/) in TARGET, and the .htaccess files for the mode.
TARGET is a local directory or user@host:path (copied with rsync over ssh;
RSYNC_RSH is used for both). The chat is then at TARGET/index.html.

Running it again changes only what differs. It never overwrites, moves or
deletes the database, and never replaces an .htaccess it did not write.

The settings (--db, --stream-mode, every --env) go into
TARGET/cgi-bin/cgichat.conf, which the programs read on every host (suEXEC
drops Apache's SetEnv) and the web server never serves; a person may edit
it over FTP. Afterwards deploy.sh runs TARGET/cgi-bin/post -check there,
which prints every setting the programs run with and where it comes from.

Options:
  --mode cgi|fcgid|daemon   how the web server runs the programs (default cgi):
        cgi     Apache mod_cgi/mod_cgid through .htaccess (shared hosts);
                also writes samples for nginx + fcgiwrap and lighttpd
                mod_cgi
        fcgid   Apache mod_fcgid through .htaccess
        daemon  two FastCGI daemons behind nginx, Apache mod_proxy_fcgi,
                lighttpd mod_fastcgi or Caddy; writes sample configs for
                them and systemd
  --stream-mode live|batch  live keeps each stream open; batch ends it after
                the first new message, for hosts that buffer responses.
                Default: live, but batch for fcgid (mod_fcgid holds 64 KiB
                of output unless the admin sets FcgidOutputBufferSize 0)
  --db PATH|URL  the SQLite database. Default: chat.db in a directory
                outside every served tree, created writable by the web
                server's user, chosen in this order:
                  ~/cgichat-data of the user the programs run as (for
                    user@host:path, your account there; the programs' own
                    default, which suEXEC hosts need);
                  DIR/cgichat-data beside TARGET, DIR being TARGET's parent;
                  /var/lib/cgichat when deploying as root;
                never in TARGET nor below a directory named public_html, www,
                htdocs, httpdocs, html or web (a PATH there is used, with a
                warning). An existing DIR/cgichat-data/chat.db (the default
                before) is kept where it is safe, else deploy.sh stops and
                tells how to move it. Or a database server shared by several
                web hosts: mysql://USER:PASSWORD@HOST:PORT/DATABASE or
                postgres://USER:PASSWORD@HOST:PORT/DATABASE (README,
                Databases); the data directory then holds only the wake-up
                sockets (CHAT_WAKE_DIR)
  --arch amd64|arm64|arm  the processor the programs run on. Default: that
                of TARGET's machine (uname -m over ssh for user@host:path).
                arm64: Raspberry Pi 3, 4, 5 and Zero 2 with a 64-bit kernel,
                ARM VPSes (Ampere, Graviton); arm: 32-bit ARMv7 (Raspberry
                Pi 2 and later with a 32-bit kernel; not the ARMv6 Pi 1 and
                Zero). Another architecture
                than this machine's needs a C cross compiler, for go-sqlite3:
                Debian's gcc-aarch64-linux-gnu, gcc-arm-linux-gnueabihf or
                gcc-x86-64-linux-gnu (or set CC)
  --web-user USER  the user the programs run as (default: the user a running
                apache2, httpd or nginx works as, else www-data, apache,
                nginx or http if one exists, else you)
  --env NAME=VALUE  another setting for the programs, e.g.
                --env CHAT_HISTORY=100 (repeatable; see README, Configuration)
  --conf-dir DIR   where sample server configs go (default: cgichat-conf
                beside the data directory)
  --socket-dir DIR daemons' sockets (default /run/cgichat)
  --fcgiwrap-socket PATH  fcgiwrap's socket (default /run/fcgiwrap.socket)
  --http-listen ADDR  listen address in the samples (default 80)
  --server-name NAME  server name in the samples (default chat.example.org)
  --dry-run     print every step and change nothing (it still builds, in a
                temporary directory, to tell which files would change)
  -h, --help    this text

Examples:
  ./deploy.sh ~/public_html/chat
  ./deploy.sh --mode fcgid me@shared.example:public_html/chat
  ./deploy.sh pi@raspberrypi.local:public_html/chat   (arm64 or arm: asks the Pi)
  sudo ./deploy.sh --mode daemon --server-name chat.example.org /var/www/chat
EOF
}

say() { printf 'deploy: %s\n' "$*"; }
warn() { printf 'deploy: warning: %s\n' "$*" >&2; }
die() {
  printf 'deploy: %s\n' "$*" >&2
  exit 1
}

# Paths and values end up in Apache, nginx and systemd files: keep them to
# characters none of those needs quoted.
safe_chars='A-Za-z0-9._/+@,:~-'
check_safe() { # what value
  [[ $2 =~ ^[$safe_chars]+$ ]] ||
    die "$1 may contain only letters, digits and ._/+@,:~- (got '$2')"
}

# --- Options -----------------------------------------------------------------

mode=cgi stream_mode="" db="" web_user="" conf_dir="" dry_run=0 arch=""
socket_dir=/run/cgichat fcgiwrap_socket=/run/fcgiwrap.socket
http_listen=80 server_name=chat.example.org
fcgiwrap_children=16
extra_env=()
target=""
need_value() { [ $# -ge 2 ] || die "$1 needs a value (see --help)"; }
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --dry-run) dry_run=1 ;;
    --mode) need_value "$@"; mode=$2; shift ;;
    --stream-mode) need_value "$@"; stream_mode=$2; shift ;;
    --db) need_value "$@"; db=$2; shift ;;
    --arch) need_value "$@"; arch=$2; shift ;;
    --web-user) need_value "$@"; web_user=$2; shift ;;
    --env) need_value "$@"; extra_env+=("$2"); shift ;;
    --conf-dir) need_value "$@"; conf_dir=$2; shift ;;
    --socket-dir) need_value "$@"; socket_dir=$2; shift ;;
    --fcgiwrap-socket) need_value "$@"; fcgiwrap_socket=$2; shift ;;
    --http-listen) need_value "$@"; http_listen=$2; shift ;;
    --server-name) need_value "$@"; server_name=$2; shift ;;
    --mode=* | --stream-mode=* | --db=* | --arch=* | --web-user=* | --env=* | --conf-dir=* | \
      --socket-dir=* | --fcgiwrap-socket=* | --http-listen=* | --server-name=*)
      set -- "${1%%=*}" "${1#*=}" "${@:2}"
      continue
      ;;
    -*) die "unknown option $1 (see --help)" ;;
    *)
      [ -z "$target" ] || die "only one TARGET, please (got '$target' and '$1')"
      target=$1
      ;;
  esac
  shift
done
[ -n "$target" ] || die "no TARGET given. Usage: ./deploy.sh [options] TARGET (see --help)"

case $mode in
  cgi | daemon) : "${stream_mode:=live}" ;;
  fcgid) : "${stream_mode:=batch}" ;;
  *) die "unknown mode '$mode': use --mode cgi, fcgid or daemon (see --help)" ;;
esac
case $stream_mode in
  live | batch) ;;
  *) die "unknown stream mode '$stream_mode': use --stream-mode live or batch" ;;
esac
case $arch in
  "" | amd64 | arm64 | arm) ;;
  *) die "unknown architecture '$arch': use --arch amd64, arm64 or arm" ;;
esac
for kv in "${extra_env[@]}"; do
  name=${kv%%=*}
  [[ $kv == *=* && $name =~ ^CHAT_[A-Z_]+$ ]] || die "--env wants CHAT_NAME=VALUE, not '$kv'"
  case $name in
    CHAT_DB) die "set the database with --db, not --env" ;;
    CHAT_STREAM_MODE) die "set the stream mode with --stream-mode, not --env" ;;
  esac
  check_safe "--env $name" "${kv#*=}"
done
for v in "$socket_dir" "$fcgiwrap_socket"; do
  [[ $v == /* ]] || die "socket paths must be absolute (got '$v')"
  check_safe "a socket path" "$v"
done
check_safe "--http-listen" "$http_listen"
check_safe "--server-name" "$server_name"

# TARGET is remote when it looks like [user@]host:path, as rsync reads it.
remote_host="" target_path=$target
if [[ $target =~ ^([^/:]+):(.*)$ ]]; then
  remote_host=${BASH_REMATCH[1]}
  target_path=${BASH_REMATCH[2]:-.}
fi

# --- Tools -------------------------------------------------------------------

cd "$(dirname "$0")"
src=$PWD
command -v go >/dev/null || die "Go is not installed (https://go.dev/dl/); the build needs Go 1.26 or later"
if [ -n "$remote_host" ]; then
  command -v rsync >/dev/null || die "rsync is not installed; it copies to $remote_host"
fi
read -r -a rsh <<<"${RSYNC_RSH:-ssh}"

# The programs are built for the processor of the machine they run on:
# --arch, else that machine's as uname -m names it. Static binaries need
# nothing of its C library, so a 64-bit kernel under a 32-bit system (as
# Raspberry Pi OS ships) runs the arm64 ones.
host_arch=$(go env GOHOSTARCH)
if [ -n "$arch" ]; then
  arch_why="--arch"
else
  if [ -n "$remote_host" ]; then
    machine=$("${rsh[@]}" "$remote_host" uname -m) ||
      die "cannot ask $remote_host for its architecture (uname -m over ${rsh[*]}): check that '${rsh[*]} $remote_host' logs in, or pass --arch"
    arch_why="the architecture of $remote_host, $machine"
  else
    machine=$(uname -m)
    arch_why="this machine's architecture, $machine"
  fi
  case $machine in
    x86_64 | amd64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    armv7* | armv8l) arch=arm ;;
    armv6*)
      # Go itself builds for ARMv6 natively; Debian's cross compiler
      # does not.
      [ -z "$remote_host" ] && [ "$host_arch" = arm ] ||
        die "$machine (Raspberry Pi 1 and Zero) is not supported: Debian's 32-bit ARM cross compiler builds for ARMv7 and later. Run deploy.sh on the Pi itself, or pass --arch to build anyway"
      arch=arm
      ;;
    *) die "no build for $machine${remote_host:+ ($remote_host)}: deploy.sh builds for amd64 (x86_64), arm64 (aarch64) and arm (ARMv7); pass --arch to build for one of them anyway" ;;
  esac
fi

# go-sqlite3 needs cgo, so a C compiler for the architecture: this
# machine's own, or a cross compiler (CC, when set, for either, as for go
# build).
case $arch in
  amd64) cross_cc=x86_64-linux-gnu-gcc cross_pkg=gcc-x86-64-linux-gnu libc_pkg=libc6-dev-amd64-cross ;;
  arm64) cross_cc=aarch64-linux-gnu-gcc cross_pkg=gcc-aarch64-linux-gnu libc_pkg=libc6-dev-arm64-cross ;;
  arm) cross_cc=arm-linux-gnueabihf-gcc cross_pkg=gcc-arm-linux-gnueabihf libc_pkg=libc6-dev-armhf-cross ;;
esac
build_env=(CGO_ENABLED=1 GOOS=linux "GOARCH=$arch")
if [ "$arch" = "$host_arch" ]; then
  cc=$(CGO_ENABLED=1 go env CC)
  command -v "${cc%% *}" >/dev/null ||
    die "no C compiler ('$cc'): go-sqlite3 needs cgo. On Debian: apt-get install gcc"
  libc_pkg=libc6-dev
else
  cc=${CC:-$cross_cc}
  command -v "${cc%% *}" >/dev/null || {
    [ -z "${CC:-}" ] || die "no C compiler ('$cc', from CC): go-sqlite3 needs cgo"
    die "building for linux/$arch ($arch_why) needs the C cross compiler $cross_cc (go-sqlite3 uses cgo), which is not installed. On Debian or Ubuntu: apt-get install $cross_pkg (or set CC to another cross compiler)"
  }
  # Debian's armhf compiler and C library are ARMv7 (hard float).
  [ "$arch" != arm ] || build_env+=(GOARM=7)
fi
build_env+=("CC=$cc")

# --- Functions that also run on the remote host (shipped with declare -f) ----

# resolve_target prints the absolute path of the docroot, which must be a
# writable directory or a new one in a writable directory.
resolve_target() { # path
  local p=$1 parent
  if [ -d "$p" ]; then
    [ -w "$p" ] || { echo "TARGET $p is not writable by $(id -un)" >&2; return 1; }
    (cd "$p" && pwd -P)
    return
  fi
  [ ! -e "$p" ] || { echo "TARGET $p exists and is not a directory" >&2; return 1; }
  parent=$(dirname "$p")
  [ -d "$parent" ] || { echo "TARGET's parent $parent does not exist" >&2; return 1; }
  [ -w "$parent" ] || { echo "cannot create TARGET $p: $parent is not writable by $(id -un)" >&2; return 1; }
  printf '%s/%s\n' "$(cd "$parent" && pwd -P)" "$(basename "$p")"
}

# foreign_htaccess prints every .htaccess under the docroot that deploy.sh
# would replace but did not write.
foreign_htaccess() { # docroot
  local f
  for f in "$1/.htaccess" "$1/cgi-bin/.htaccess"; do
    if [ -f "$f" ] && ! head -n 1 "$f" | grep -q '^# cgichat: written by deploy.sh'; then
      echo "$f"
    fi
  done
}

# served_by prints what may put path on the web: TARGET when path is in
# it, else the topmost directory on the way up named like a document
# root; nothing when there is neither.
served_by() { # path docroot
  local d=$1 found=""
  case $1/ in "$2"/*)
    echo "$2"
    return
    ;;
  esac
  while [ "$d" != / ] && [ "$d" != . ]; do
    case ${d##*/} in public_html | www | htdocs | httpdocs | html | web) found=$d ;; esac
    d=$(dirname "$d")
  done
  [ -z "$found" ] || echo "$found"
}

# served_words says why path, which served_by found in served, may be
# served.
served_words() { # path served docroot
  if [ "$2" = "$3" ]; then
    echo "is in TARGET"
  elif [ "$1" = "$2" ]; then
    echo "is named like a document root, so it may be served"
  else
    echo "is in $2, named like a document root, so it may be served"
  fi
}

# data_facts prints, as NAME=VALUE lines, what deploy.sh needs to place
# the database: the default directory (kind, dir, why), a database at the
# former default beside TARGET (old_db, and old_served when that place may
# be served), a former sample directory there (old_conf), whether a
# database is at the default already (new_db), and who deploys.
# The default is the first of these outside every served tree: the home
# of the user the programs run as (their own default), TARGET's parent,
# and /var/lib/cgichat for root; kind=none when there is none.
data_facts() { # docroot user
  local docroot=$1 user=$2 parent home owner served why_home why_parent
  parent=$(dirname "$docroot")
  echo "me=$(id -un)"
  if [ -e "$parent/cgichat-data/chat.db" ]; then
    echo "old_db=$parent/cgichat-data/chat.db"
    echo "old_served=$(served_by "$parent/cgichat-data" "$docroot")"
  fi
  [ ! -d "$parent/cgichat-conf" ] || echo "old_conf=$parent/cgichat-conf"
  # The programs, when CHAT_DB does not reach them (suEXEC drops SetEnv),
  # look in $HOME, else in the passwd entry's home.
  if [ "$user" = "$(id -un)" ] && [ -n "${HOME:-}" ]; then
    home=$HOME
  else
    home=$(getent passwd "$user" | cut -d: -f6) || home=""
  fi
  if [ -z "$home" ]; then
    why_home="$user has no home directory"
  elif [ ! -d "$home" ]; then
    why_home="$user's home $home does not exist"
  else
    home=$(cd "$home" && pwd -P)
    owner=$(stat -c %U "$home")
    served=$(served_by "$home" "$docroot")
    if [ "$home" = / ]; then
      why_home="$user's home is /"
    elif [ -n "$served" ]; then
      why_home="$user's home $home $(served_words "$home" "$served" "$docroot")"
    elif [ "$owner" != "$user" ]; then
      why_home="$user's home $home belongs to $owner, not to $user"
    elif [ ! -d "$home/cgichat-data" ] && [ ! -w "$home" ]; then
      why_home="$user's home $home is not writable by $(id -un)"
    else
      echo "kind=home"
      echo "dir=$home/cgichat-data"
      [ ! -e "$home/cgichat-data/chat.db" ] || echo "new_db=$home/cgichat-data/chat.db"
      echo "why=the home of $user, who runs the programs: outside every served directory, and where the programs look by themselves"
      return
    fi
  fi
  served=$(served_by "$parent" "$docroot")
  if [ -n "$served" ]; then
    why_parent="TARGET's parent $parent $(served_words "$parent" "$served" "$docroot")"
  elif [ ! -d "$parent/cgichat-data" ] && [ ! -w "$parent" ]; then
    why_parent="TARGET's parent $parent is not writable by $(id -un)"
  else
    echo "kind=parent"
    echo "dir=$parent/cgichat-data"
    echo "why=beside TARGET, in $parent, which is not named like a document root nor in one; $why_home"
    return
  fi
  if [ "$(id -u)" = 0 ]; then
    echo "kind=system"
    echo "dir=/var/lib/cgichat"
    [ ! -e /var/lib/cgichat/chat.db ] || echo "new_db=/var/lib/cgichat/chat.db"
    echo "why=the system's place for a program's data: $why_home; $why_parent"
    return
  fi
  echo "kind=none"
  echo "why=$why_home; $why_parent"
}

# prepare_data_dir creates the database's directory writable by the web
# server's user, or reports on the one it finds, which it leaves as it is
# (but for a missing deny-all .htaccess when the directory may be served).
# It never touches the database.
prepare_data_dir() { # dir db user group dry_run served
  local dir=$1 db=$2 user=$3 group=$4 dry=$5 served=$6 owner act=run deny=0
  [ "$dry" = 0 ] || act=would
  if [ -d "$dir" ]; then
    echo "deploy: data directory $dir exists: left as it is"
    [ -z "$served" ] || [ -e "$dir/.htaccess" ] || deny=1
    owner=$(stat -c %U "$dir")
    if [ "$owner" != "$user" ] && [ "$(stat -c %a "$dir")" != 777 ] &&
      ! { [ "$(stat -c %G "$dir")" = "$group" ] && [ -n "$(find "$dir" -maxdepth 0 -perm -g=w)" ]; }; then
      echo "deploy: warning: $dir belongs to $owner and may not be writable by $user;" \
        "fix: chown $user:$group $dir" >&2
    fi
  else
    local how
    if [ "$(id -u)" = 0 ]; then
      how=(-m 0750 -o "$user" -g "$group")
    elif [ "$(id -un)" = "$user" ]; then
      how=(-m 0750)
    elif id -Gn | tr ' ' '\n' | grep -qx "$group"; then
      how=(-m 2770 -g "$group")
    else
      echo "deploy: warning: cannot give $dir to $user (not root, not in group $group):" \
        "making it writable by everyone. Better, as root: chown $user:$group $dir && chmod 0750 $dir" >&2
      how=(-m 0777)
    fi
    echo "deploy: $act: install -d ${how[*]} $dir"
    [ "$act" != run ] || install -d "${how[@]}" "$dir"
    deny=1
  fi
  # Should the directory be below a document root, Apache serves nothing
  # from it.
  if [ "$deny" = 1 ]; then
    echo "deploy: $act: write $dir/.htaccess (Require all denied)"
    [ "$act" != run ] || printf '%s\n' '# cgichat: written by deploy.sh. The database is never served.' \
      'Require all denied' >"$dir/.htaccess"
  fi
  if [ -z "$db" ]; then
    echo "deploy: $dir holds the wake-up sockets; the database is on its server"
  elif [ -e "$db" ]; then
    echo "deploy: database $db exists: not touched"
    if [ "$(stat -c %U "$db")" != "$user" ]; then
      echo "deploy: warning: $db belongs to $(stat -c %U "$db"), not $user; if posts fail," \
        "fix: chown $user:$group $db $db-wal $db-shm $db-lock" >&2
    fi
  else
    echo "deploy: the programs create $db on first use, as $user"
  fi
}

# active_settings prints the lines of a settings file that set something.
active_settings() { # file
  [ ! -f "$1" ] || grep -E '^[[:space:]]*CHAT_' "$1" || true
}

# suexec_tree makes cgi-bin and what is in it as suEXEC (cPanel-style
# hosts run an account's CGI programs as the account) requires: owned by
# the programs' user and group, not writable by group or others; and says
# what it cannot fix. Harmless where suEXEC is not used.
suexec_tree() { # docroot data_dir user group dry_run
  local docroot=$1 data=$2 user=$3 group=$4 dry=$5 me uid home p act=run account=0
  me=$(id -un)
  [ "$dry" = 0 ] || act=would
  [ -d "$docroot/cgi-bin" ] || return 0
  uid=$(id -u "$user" 2>/dev/null) || return 0
  home=$(getent passwd "$user" | cut -d: -f6)
  # An account's site: a user of its own (not a system user such as
  # www-data), the site in its home.
  if [ "$uid" -ge 1000 ] && [ -n "$home" ] && [ "$home" != / ]; then
    case $docroot/ in "$home"/*) account=1 ;; esac
  fi
  for p in "$docroot/cgi-bin" "$docroot/cgi-bin/post" "$docroot/cgi-bin/stream" "$docroot/cgi-bin/cgichat.conf"; do
    [ -e "$p" ] || continue
    if [ "$(stat -c %U:%G "$p")" != "$user:$group" ]; then
      if [ "$account" = 1 ] && [ "$me" = root ]; then
        echo "deploy: $act: chown $user:$group $p (suEXEC runs only the account's own programs)"
        [ "$act" != run ] || chown "$user:$group" "$p"
      elif [ "$me" = "$user" ] && [ "$(stat -c %U "$p")" = "$user" ]; then
        echo "deploy: $act: chgrp $group $p (suEXEC wants the programs in their owner's group)"
        [ "$act" != run ] || chgrp "$group" "$p"
      elif [ "$account" = 1 ]; then
        echo "deploy: warning: $p belongs to $(stat -c %U:%G "$p"), not to $user:$group: suEXEC refuses to run an account's programs that are not its own. Deploy as $user, or as root" >&2
      fi
    fi
    if [ -n "$(find "$p" -maxdepth 0 -perm /022)" ]; then
      if [ -O "$p" ] || [ "$me" = root ]; then
        echo "deploy: $act: chmod go-w $p (suEXEC refuses programs that others may change)"
        [ "$act" != run ] || chmod go-w "$p"
      else
        echo "deploy: warning: $p is writable by group or others and belongs to $(stat -c %U "$p"): suEXEC refuses to run programs there. Fix: chmod go-w $p" >&2
      fi
    fi
  done
  if [ "$account" = 1 ]; then
    case $data/ in
      "$home"/*) ;;
      *) echo "deploy: warning: the data directory $data is outside $user's home $home: under suEXEC the programs run as $user and write only where $user may; a --db in $home is safer" >&2 ;;
    esac
  fi
}

# run_check runs post -check in the docroot, as the programs' user when
# deploy.sh runs as root, and prints its output; its status is -check's
# (1: the settings are refused), or 125 when it could not run.
run_check() { # docroot user
  local prog=$1/cgi-bin/post as=()
  if [ "$(id -u)" = 0 ] && [ "$2" != root ] && command -v runuser >/dev/null; then
    as=(runuser -u "$2" --)
    if ! "${as[@]}" test -x "$prog"; then
      echo "$2 cannot run $prog: a directory on the way is closed to $2"
      return 125
    fi
  fi
  (cd "$1/cgi-bin" && "${as[@]}" "$prog" -check 2>&1) && return 0
  case $? in
    1) return 1 ;;
    *) return 125 ;;
  esac
}

# on_target runs one of the functions above where TARGET is.
on_target() { # function args...
  if [ -z "$remote_host" ]; then
    "$@"
  else
    "${rsh[@]}" "$remote_host" bash -s <<<"$(declare -f resolve_target foreign_htaccess served_by served_words data_facts prepare_data_dir active_settings suexec_tree run_check)
$(printf '%q ' "$@")"
  fi
}

# --- Where things go ---------------------------------------------------------

docroot=$(on_target resolve_target "$target_path") || die "cannot deploy to $target"
check_safe "TARGET" "$docroot"

foreign=$(on_target foreign_htaccess "$docroot")
[ -z "$foreign" ] || die "$(printf '%s\n' "these .htaccess files were not written by deploy.sh:" "$foreign" \
  "Deploy into a directory of its own (for example $docroot/chat), or merge contrib/htaccess/ into them by hand.")"

if [ -z "$web_user" ]; then
  if [ -n "$remote_host" ]; then
    web_user=$("${rsh[@]}" "$remote_host" id -un)
    why="your account on $remote_host: most shared hosts run CGI as its owner (suEXEC); pass --web-user otherwise"
  elif web_user=$(ps -eo user=,comm= | awk '$1 != "root" && $2 ~ /^(apache2|httpd|nginx)$/ { print $1; exit }') && [ -n "$web_user" ]; then
    why="a running web server works as $web_user"
  else
    web_user=$(id -un)
    why="no web server user found; assuming the programs run as you"
    for u in www-data apache nginx http; do
      if id "$u" >/dev/null 2>&1; then
        web_user=$u why="user $u exists here"
        break
      fi
    done
  fi
else
  why="--web-user"
fi
check_safe "--web-user" "$web_user"
if [ -z "$remote_host" ]; then
  web_group=$(id -gn "$web_user" 2>/dev/null) || die "user $web_user does not exist here (--web-user)"
else
  web_group=$("${rsh[@]}" "$remote_host" id -gn "$web_user") || die "user $web_user does not exist on $remote_host"
fi
say "assuming the web server runs the programs as $web_user ($why)"

# Where the database may go, as seen on TARGET's machine.
facts=$(on_target data_facts "$docroot" "$web_user") ||
  die "cannot look for a place for the database on ${remote_host:-this machine}"
me="" kind="" default_dir="" default_why="" old_db="" old_served="" old_conf="" new_db=""
while IFS= read -r line; do
  case ${line%%=*} in
    me) me=${line#*=} ;;
    kind) kind=${line#*=} ;;
    dir) default_dir=${line#*=} ;;
    why) default_why=${line#*=} ;;
    old_db) old_db=${line#*=} ;;
    old_served) old_served=${line#*=} ;;
    old_conf) old_conf=${line#*=} ;;
    new_db) new_db=${line#*=} ;;
  esac
done <<<"$facts"

# no_place says that no default place for the database qualifies.
no_place() {
  die "found no place for the database outside the served tree: $default_why. Choose one with --db, in a directory $web_user can write that is not below a directory named public_html, www, htdocs, httpdocs, html or web (for example --db /home/$web_user/cgichat-data/chat.db)"
}

# move_advice tells how to move the database at old out of the served
# tree; deploy.sh itself never moves a database.
move_advice() { # old
  local old=$1 new=$default_dir/chat.db on="" stop start="" own=""
  [ "$kind" != none ] || new=/a/directory/outside/the/docroots/chat.db
  [ -z "$remote_host" ] || on=" (on $remote_host)"
  stop="mv $docroot/cgi-bin $docroot/cgi-bin.stopped"
  if [ "$mode" = daemon ]; then
    stop="systemctl stop cgichat@post cgichat@stream"
    start=" && systemctl start cgichat@post cgichat@stream"
  fi
  [ "$me" = "$web_user" ] || own=" && chown -R $web_user:$web_group $(dirname "$new")"
  cat <<MSG
an earlier deployment put the database at $old, which $(served_words "$(dirname "$old")" "$old_served" "$docroot"): every message, the claims secret and the bans would then be one URL away, kept off the web only by an .htaccess that nginx, lighttpd, Caddy and Apache with AllowOverride None do not read. deploy.sh never moves a database; to move it${on}:
  1. stop the chat: $stop
     and wait a few seconds for posts under way
  2. copy the database, consistently (WAL included):
     mkdir -p $(dirname "$new") && sqlite3 $old ".backup $new"$own
  3. deploy onto the copy, which brings the chat back:
     ./deploy.sh --db $new [your other options] $target$start
  4. once the chat shows its history: rm -r $(dirname "$old")${old_conf:+ $old_conf}$([ "$mode" = daemon ] || echo " $docroot/cgi-bin.stopped")
Or keep it there, knowingly: ./deploy.sh --db $old [your other options] $target
MSG
}

# A database server's URL is no path: the data directory then holds the
# wake-up sockets of this host's programs, and nothing else.
db_url="" db_served=""
case $db in
  mysql://* | postgres://* | postgresql://*)
    db_url=$db
    # Percent-encoded passwords are fine; what a shell, Apache, nginx or
    # systemd would read otherwise is not.
    [[ $db_url =~ ^[A-Za-z0-9._/+@,:~%?\&=-]+$ ]] ||
      die "--db URL may contain only letters, digits and ._/+@,:~%?&=- (percent-encode the rest of a password)"
    [[ $db_url =~ ^[a-z]+://[^/]+/[^/?]+ ]] || die "--db URL must name a host and a database: ${db_url%%://*}://USER:PASSWORD@HOST:PORT/DATABASE"
    [ "$kind" != none ] || no_place
    data_dir=$default_dir
    say "data directory, for the wake-up sockets: $data_dir ($default_why)"
    ;;
  "")
    if [ -n "$old_db" ] && [ -n "$old_served" ] && [ -n "$new_db" ]; then
      # Perhaps moved already: a copy made again would overwrite what
      # came since.
      die "there are two databases, $old_db, where an earlier deployment put it (it $(served_words "$(dirname "$old_db")" "$old_served" "$docroot")), and $new_db, the default now. deploy.sh cannot tell which one the chat uses ('SetEnv CHAT_DB' in $docroot/cgi-bin/.htaccess or 'Environment=CHAT_DB' in the systemd unit says): deploy with --db naming it, and remove the other once you are sure"
    elif [ -n "$old_db" ] && [ -n "$old_served" ]; then
      die "$(move_advice "$old_db")"
    elif [ -n "$old_db" ]; then
      # Never split a chat over two databases.
      db=$old_db
      say "database: $db, where an earlier deployment put it, beside TARGET: kept there (not in a directory named like a document root nor below one)"
    else
      [ "$kind" != none ] || no_place
      db=$default_dir/chat.db
      say "database: $db ($default_why)"
    fi
    ;;
  *)
    [ -n "$remote_host" ] || db=$(realpath -m -- "$db")
    [[ $db == /* ]] || die "--db must be an absolute path for a remote TARGET"
    case $db/ in
      "$docroot"/*) die "the database $db would be inside TARGET, where the web server could serve it; choose a --db outside $docroot" ;;
    esac
    db_served=$(served_by "$(dirname "$db")" "$docroot")
    [ -z "$db_served" ] ||
      warn "the database's directory $(dirname "$db") $(served_words "$(dirname "$db")" "$db_served" "$docroot"): if the web server serves it, every message, the claims secret and the bans are kept off the web only by the 'Require all denied' .htaccess deploy.sh puts there, which nginx, lighttpd, Caddy and Apache with AllowOverride None do not read. A --db outside every served directory is safer${default_dir:+, such as $default_dir/chat.db}"
    ;;
esac
if [ -z "$db_url" ]; then
  check_safe "the database's path" "$db"
  # The wake-up sockets live in DB-wake/PID-RANDOM; Linux allows 107 bytes.
  [ ${#db} -le 80 ] ||
    warn "the database path is long (${#db} bytes): streams may fall back to polling every CHAT_POLL_MS; a shorter --db avoids it"
  data_dir=$(dirname "$db")
fi
check_safe "the data directory" "$data_dir"
if [ -n "$old_db" ] && [ "$db" != "$old_db" ]; then
  say "note: an earlier deployment's database is still at $old_db, and this one does not use it. deploy.sh never moves or deletes a database: once the chat shows its history, remove $(dirname "$old_db")"
fi

# The sample configurations name the database (and a server's password):
# they go beside its directory, outside the served tree too.
if [ -z "$conf_dir" ]; then
  conf_dir=$(dirname "$data_dir")/cgichat-conf
  if [ -n "$old_conf" ] && [ "$old_conf" != "$conf_dir" ]; then
    say "note: $old_conf holds an earlier deployment's samples; they now go to $conf_dir: remove $old_conf"
  fi
fi
[ -n "$remote_host" ] || conf_dir=$(realpath -m -- "$conf_dir")
[[ $conf_dir == /* ]] || die "--conf-dir must be an absolute path for a remote TARGET"
check_safe "--conf-dir" "$conf_dir"

# --- Build -------------------------------------------------------------------

# elf_arch prints the architecture of an ELF executable, from its header:
# byte 4 is the class (1: 32-bit, 2: 64-bit), bytes 18-19 the machine
# (62: x86-64, 183: AArch64, 40: ARM).
elf_arch() { # file
  local b
  read -r -a b <<<"$(od -An -tu1 -N20 "$1" | tr '\n' ' ')"
  if [ "${#b[@]}" -lt 20 ] || [ "${b[*]:0:4}" != "127 69 76 70" ]; then
    echo "no ELF executable"
    return
  fi
  case ${b[4]}:$((b[18] + 256 * b[19])) in
    2:62) echo amd64 ;;
    2:183) echo arm64 ;;
    1:40) echo arm ;;
    *) echo "ELF class ${b[4]}, machine $((b[18] + 256 * b[19]))" ;;
  esac
}


stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/docroot/cgi-bin" "$stage/conf"
chmod 0755 "$stage/docroot" "$stage/docroot/cgi-bin" "$stage/conf"
say "building post and stream: static linux/$arch binaries ($arch_why; cgo with $cc, go-sqlite3)"
# -trimpath and -buildvcs=false make the binaries depend on the sources
# alone, not on where the checkout is or who owns it (git refuses to read
# another user's repository), so an unchanged tree gives unchanged files.
# For a SQLite database the MySQL and PostgreSQL drivers stay out: 40 % less
# binary, and less memory in every CGI process (README, Performance).
tags='sqlite_omit_load_extension osusergo netgo'
[ -n "$db_url" ] || tags="$tags cgichat_sqlite_only"
for prog in post stream; do
  if ! out=$(env "${build_env[@]}" go build -trimpath -buildvcs=false \
    -tags "$tags" \
    -ldflags '-linkmode external -extldflags -static' \
    -o "$stage/docroot/cgi-bin/$prog" "./cgi-bin/$prog" 2>&1); then
    printf '%s\n' "$out" >&2
    hint=""
    if grep -q 'cannot find -l' <<<"$out"; then
      hint=" A static build needs the C library's static archive (Debian: $libc_pkg, which ${cc%% *} brings; Alpine: musl-dev)."
    fi
    die "building $prog failed.$hint"
  fi
  bin=$stage/docroot/cgi-bin/$prog
  got=$(elf_arch "$bin")
  [ "$got" = "$arch" ] || die "$prog was built for $got, not for linux/$arch"
  if command -v file >/dev/null; then
    file -L "$bin" | grep -Eq 'statically linked|static-pie linked' ||
      die "$prog is not statically linked: $(file -L "$bin")"
  elif command -v readelf >/dev/null; then
    ! readelf -l "$bin" | grep -q 'program interpreter' ||
      die "$prog is not statically linked: it asks for a program interpreter"
  else
    warn "neither file nor readelf is installed: cannot check that $prog is statically linked"
  fi
  # ldd runs the binary's loader: only this machine's architecture can.
  if [ "$arch" = "$host_arch" ] && ldd "$bin" >/dev/null 2>&1; then
    die "$prog is linked dynamically: $(ldd "$bin" | tr '\n' ' ')"
  fi
done
say "checked: post and stream are statically linked linux/$arch executables"

# --- Stage the page and the configuration ------------------------------------

[ -f public/index.html ] || die "public/index.html is missing: run deploy.sh from a cgichat checkout"
page_files=() page_names=()
while IFS= read -r -d '' f; do
  rel=${f#public/}
  [[ $rel =~ ^[A-Za-z0-9_][A-Za-z0-9._/-]*$ ]] || die "public/$rel: page files need plain names (letters, digits, ._-)"
  install -D -m 0644 "$f" "$stage/docroot/$rel"
  page_files+=("${rel//./\\.}")
  page_names+=("$(basename "$rel" | sed 's/\./\\./g')")
done < <(find public -type f ! -path '*/.*' -print0 | sort -z)
chmod -R u=rwX,go=rX "$stage/docroot"

# The settings of the programs, written into cgi-bin/cgichat.conf, which
# they read in every mode. (nginx + fcgiwrap runs the stream in batch mode
# by a fastcgi_param of its own: see contrib/nginx/fcgiwrap.conf.)
db_settings=("CHAT_DB=$db")
wake_default=$db-wake poll_default=250
if [ -n "$db_url" ]; then
  db_settings=("CHAT_DB=$db_url" "CHAT_WAKE_DIR=$data_dir/wake")
  wake_default=$data_dir/wake poll_default=25
fi
settings=("${db_settings[@]}" "CHAT_STREAM_MODE=$stream_mode" "${extra_env[@]}")

# render copies a template from contrib/, replacing every @NAME@ it knows,
# and fails on any it does not.
render() { # template destination
  local text
  text=$(<"contrib/$1")
  text=${text//@MODE@/"$mode"}
  text=${text//@DOCROOT@/"$docroot"}
  text=${text//@CHAT_DB@/"$db"}
  text=${text//@SOCKET_DIR@/"$socket_dir"}
  text=${text//@FCGIWRAP_SOCKET@/"$fcgiwrap_socket"}
  text=${text//@FCGIWRAP_CHILDREN@/"$fcgiwrap_children"}
  text=${text//@WEB_USER@/"$web_user"}
  text=${text//@WEB_GROUP@/"$web_group"}
  text=${text//@SERVER_NAME@/"$server_name"}
  text=${text//@NGINX_LISTEN@/"$http_listen"}
  text=${text//@APACHE_LISTEN@/"$apache_listen"}
  text=${text//@PAGE_FILES@/"$(IFS='|'; echo "${page_files[*]}")"}
  text=${text//@PAGE_NAMES@/"$(IFS='|'; echo "${page_names[*]}")"}
  text=${text//@HANDLER@/"$handler"}
  text=${text//@SETTINGS@/"$(printf '%s\n' "${settings[@]}")"}
  text=${text//@WAKE_DIR@/"$wake_default"}
  text=${text//@POLL_MS@/"$poll_default"}
  # config.DefaultMaxStreams under CGI and mod_fcgid; a daemon has no budget.
  text=${text//@MAX_STREAMS@/"$([ "$mode" = daemon ] && echo 0 || echo 8)"}
  text=${text//@LIGHTTPD_SOCKET@/"$listen_host:$listen_port"}
  text=${text//@LISTEN_PORT@/"$listen_port"}
  text=${text//@CADDY_BIND@/"${listen_host:+bind $listen_host}"}
  if [[ $text =~ @[A-Z_]+@ ]]; then
    die "contrib/$1: unknown placeholder ${BASH_REMATCH[0]}"
  fi
  printf '%s\n' "$text" >"$2"
  chmod 0644 "$2"
}

# stage_settings writes cgi-bin/cgichat.conf from contrib/cgichat.conf: the
# settings above, then every other one commented out at its default. It is
# readable by the programs' user alone when they run as the deploying user
# (a suEXEC host): then the web server cannot read it, let alone serve it.
stage_settings() { # destination
  local kv line set_names=" "
  for kv in "${settings[@]}"; do set_names+="${kv%%=*} "; done
  render cgichat.conf "$1.template"
  while IFS= read -r line; do
    [[ $line =~ ^#\ (CHAT_[A-Z0-9_]+)= && $set_names == *" ${BASH_REMATCH[1]} "* ]] ||
      printf '%s\n' "$line"
  done <"$1.template" >"$1"
  rm "$1.template"
  if [ "$deployer" = "$web_user" ]; then
    chmod 0600 "$1"
  else
    chmod 0644 "$1"
  fi
}
deployer=$(on_target id -un) || die "cannot run id -un on ${remote_host:-this machine}"

apache_listen=$http_listen
[[ $http_listen =~ ^[0-9]+$ ]] && apache_listen="*:$http_listen"
# lighttpd and Caddy take the address and the port apart; none means all.
listen_host="" listen_port=$http_listen
if [[ $http_listen =~ ^(.*):([0-9]+)$ ]]; then
  listen_host=${BASH_REMATCH[1]} listen_port=${BASH_REMATCH[2]}
elif [[ ! $http_listen =~ ^[0-9]+$ ]]; then
  listen_host=$http_listen listen_port=80
fi
handler=cgi-script
[ "$mode" != fcgid ] || handler=fcgid-script
render htaccess/docroot.htaccess "$stage/docroot/.htaccess"
stage_settings "$stage/docroot/cgi-bin/cgichat.conf"
render htaccess/deny-all.htaccess "$stage/conf/.htaccess"
case $mode in
  cgi)
    render htaccess/cgi-bin.htaccess "$stage/docroot/cgi-bin/.htaccess"
    render nginx/fcgiwrap.conf "$stage/conf/nginx-fcgiwrap.conf"
    render fcgiwrap/fcgiwrap.default "$stage/conf/fcgiwrap.default"
    render lighttpd/cgi.conf "$stage/conf/lighttpd-cgi.conf"
    ;;
  fcgid)
    render htaccess/cgi-bin.htaccess "$stage/docroot/cgi-bin/.htaccess"
    render apache/fcgid-live.conf "$stage/conf/apache-fcgid-live.conf"
    ;;
  daemon)
    render htaccess/cgi-bin-daemon.htaccess "$stage/docroot/cgi-bin/.htaccess"
    render nginx/daemon.conf "$stage/conf/nginx-daemon.conf"
    render apache/daemon.conf "$stage/conf/apache-daemon.conf"
    render systemd/cgichat@.service "$stage/conf/cgichat@.service"
    render lighttpd/daemon.conf "$stage/conf/lighttpd-daemon.conf"
    render caddy/Caddyfile "$stage/conf/Caddyfile"
    ;;
esac

# A settings file edited since the last deployment: say which of its
# settings this one does not keep.
while IFS= read -r line; do
  line=$(sed -E 's/^[[:space:]]+//; s/[[:space:]]*=[[:space:]]*/=/; s/[[:space:]]+$//' <<<"$line")
  [ -n "$line" ] || continue
  if ! grep -qxF -- "$line" "$stage/docroot/cgi-bin/cgichat.conf"; then
    case ${line%%=*} in
      CHAT_DB) keep="--db ${line#*=}" ;;
      CHAT_STREAM_MODE) keep="--stream-mode ${line#*=}" ;;
      *) keep="--env $line" ;;
    esac
    say "note: $docroot/cgi-bin/cgichat.conf sets $line, which this deployment replaces: to keep it, deploy with $keep"
  fi
done < <(on_target active_settings "$docroot/cgi-bin/cgichat.conf")

# --- Install -----------------------------------------------------------------

changed=0
act=install
[ "$dry_run" = 0 ] || act="would install"

# install_tree copies every staged file that differs into dest, through a
# temporary file and a rename, so a running program is replaced, not
# rewritten under its feet.
install_tree() { # staged dest
  local from=$1 to=$2 rel f mode
  while IFS= read -r -d '' f; do
    rel=${f#"$from"/}
    mode=$(stat -c %a "$f")
    if [ -f "$to/$rel" ] && cmp -s "$f" "$to/$rel" && [ "$(stat -c %a "$to/$rel")" = "$mode" ]; then
      continue
    fi
    say "$act $to/$rel"
    changed=$((changed + 1))
    [ "$dry_run" = 0 ] || continue
    [ -d "$(dirname "$to/$rel")" ] || install -d -m 0755 "$(dirname "$to/$rel")"
    install -m "$mode" "$f" "$to/.$(basename "$rel").cgichat-new"
    mv -f "$to/.$(basename "$rel").cgichat-new" "$to/$rel"
  done < <(find "$from" -type f -print0 | sort -z)
}

# rsync_tree does the same for a remote TARGET, comparing by checksum.
rsync_tree() { # staged dest
  local out
  out=$(rsync -r --executability --checksum --itemize-changes \
    $([ "$dry_run" = 0 ] || echo --dry-run) -e "${RSYNC_RSH:-ssh}" \
    "$1/" "$remote_host:$2/") || die "rsync to $remote_host:$2 failed"
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    say "$act $remote_host:$2/${line#* }"
    changed=$((changed + 1))
  done <<<"$out"
}

for pair in "docroot:$docroot" "conf:$conf_dir"; do
  if [ -z "$remote_host" ]; then
    install_tree "$stage/${pair%%:*}" "${pair#*:}"
  else
    rsync_tree "$stage/${pair%%:*}" "${pair#*:}"
  fi
done
db_file=$db
[ -z "$db_url" ] || db_file=""
on_target prepare_data_dir "$data_dir" "$db_file" "$web_user" "$web_group" "$dry_run" "$(served_by "$data_dir" "$docroot")"
on_target suexec_tree "$docroot" "$data_dir" "$web_user" "$web_group" "$dry_run"

# What the programs will run with, as they see it there.
if [ "$dry_run" = 0 ]; then
  status=0
  check=$(on_target run_check "$docroot" "$web_user") || status=$?
  case $status in
    0)
      say "cgi-bin/post -check on ${remote_host:-this machine}, the settings at their defaults left out:"
      grep -v '  \[default\]$' <<<"$check" | sed 's/^/deploy:   /'
      ;;
    1) if grep -q '^post -check: ' <<<"$check"; then
      die "$(printf '%s\n' "the programs refuse their settings; cgi-bin/post -check says:" "$check")"
    fi ;&
    *) warn "could not run $docroot/cgi-bin/post -check on ${remote_host:-this machine}: $(tail -n 1 <<<"$check")" ;;
  esac
fi

# --- What next ---------------------------------------------------------------

where=$docroot
[ -z "$remote_host" ] || where=$remote_host:$docroot
if [ "$changed" = 0 ]; then
  say "nothing to change: $where is up to date"
elif [ "$dry_run" = 1 ]; then
  say "dry run: $changed files would change; nothing was written"
else
  say "done: $changed files changed"
fi
say "page: TARGET/index.html; programs: TARGET/cgi-bin/post and TARGET/cgi-bin/stream ($mode, stream $stream_mode)"
say "settings: TARGET/cgi-bin/cgichat.conf; to see what the programs run with: TARGET/cgi-bin/post -check"
case $mode in
  cgi)
    say "Apache: needs mod_cgid (or mod_cgi) and AllowOverride FileInfo AuthConfig Indexes Options=ExecCGI (or All)"
    say "nginx + fcgiwrap: $conf_dir/nginx-fcgiwrap.conf and $conf_dir/fcgiwrap.default"
    say "lighttpd: $conf_dir/lighttpd-cgi.conf"
    ;;
  fcgid)
    say "Apache: needs mod_fcgid and AllowOverride FileInfo AuthConfig Indexes Options=ExecCGI (or All)"
    [ "$stream_mode" = live ] || say "with server access: add $conf_dir/apache-fcgid-live.conf to Apache's configuration and deploy again with --stream-mode live"
    ;;
  daemon)
    say "daemons: copy $conf_dir/cgichat@.service to /etc/systemd/system/, then"
    say "  systemctl daemon-reload && systemctl enable --now cgichat@post cgichat@stream"
    say "  (without systemd, as $web_user: $docroot/cgi-bin/post -listen unix:$socket_dir/post.sock, and the same for stream)"
    [ "$socket_dir" = /run/cgichat ] || say "  $socket_dir must exist and be writable by $web_user"
    say "front end: $conf_dir/nginx-daemon.conf, $conf_dir/apache-daemon.conf,"
    say "  $conf_dir/lighttpd-daemon.conf or $conf_dir/Caddyfile"
    [ "$changed" = 0 ] || say "after an update: systemctl restart cgichat@post cgichat@stream"
    ;;
esac
