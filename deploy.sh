#!/usr/bin/env bash
# deploy.sh builds cgichat's two programs as static binaries and installs
# them, the page and the web server configuration into a document root,
# locally or over rsync. Run ./deploy.sh --help for what it does.
set -euo pipefail
export LC_ALL=C

usage() {
  cat <<'EOF'
Usage: ./deploy.sh [options] TARGET
       ./deploy.sh --check URL
       ./deploy.sh --from ARCHIVE [--dry-run] [--db PATH] [--web-user USER] TARGET
       ./deploy.sh --package OUTDIR

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
                htdocs, httpdocs, html, web, public, http or wwwroot (a PATH
                there is used, with a warning). An existing DIR/cgichat-data/chat.db (the default
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

./deploy.sh --check URL checks a deployed chat from outside, as a browser
would, with bash and curl alone: URL is the chat's page. It loads the page,
asks the programs for their settings, posts a test message in a room of its
own (and deletes it), sees how the stream delivers it, tries text a firewall
may refuse and the addresses of what must never be served (the database,
.htaccess, cgichat.conf), and looks at the headers. One line per finding
(ok, warning, problem) with what to do; exit status 1 when there is a
problem. docs/troubleshooting.md explains each.
Release archives (no Go or C compiler needed where they are installed):
  --package OUTDIR  builds the release archives into OUTDIR, for people
                without Go: cgichat-VERSION-linux-amd64 and -arm64, each as
                .tar.gz and .zip, and SHA256SUMS. Each holds chat/ (the page,
                the programs, the .htaccess files for mod_cgid, a settings
                file with every setting commented), cgichat-data/, this
                script and INSTALL.txt, which says how to upload it by FTP.
                VERSION is the checkout's git tag (git describe --tags) or
                commit, with -dirty for uncommitted changes; every file is
                dated at the commit (SOURCE_DATE_EPOCH and CGICHAT_VERSION
                override both), so the same commit gives the same bytes.
                Needs Go, a C compiler and the arm64 (or amd64) cross
                compiler (see --arch)
  --from ARCHIVE  installs from a release archive (.tar.gz) instead of
                building: checks it against SHA256SUMS when that file is
                beside it, and its architecture against TARGET's machine
                (or --arch), then installs as above, for plain CGI (mod_cgid
                or mod_cgi). A settings file TARGET already has is kept as
                it is; a first one comes from the archive, with CHAT_DB set
                to --db or the default place above

Examples:
  ./deploy.sh ~/public_html/chat
  ./deploy.sh --mode fcgid me@shared.example:public_html/chat
  ./deploy.sh pi@raspberrypi.local:public_html/chat   (arm64 or arm: asks the Pi)
  sudo ./deploy.sh --mode daemon --server-name chat.example.org /var/www/chat
  ./deploy.sh --package dist
  ./deploy.sh --from dist/cgichat-v1.0.0-linux-amd64.tar.gz me@shared.example:public_html/chat
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

# --- deploy.sh --check URL: a deployment seen from outside -------------------
#
# The check probes a deployed chat over HTTP the way a browser does and
# prints one verdict per line (ok, warning, problem) with what to do; its
# exit status is 1 when a problem was found, 0 with warnings only, 2 when
# it could not run. It needs bash (3.2 will do, as macOS has) and curl,
# neither Go nor a build, and leaves a test message only in a room of its
# own, which it deletes again where the chat lets it (a poster may delete
# their own message for 10 minutes). The guide to every verdict is
# docs/troubleshooting.md. Everything here is named ck_*.

# ck_clean passes text to the terminal without its control characters
# but tab and line feed: what the checked host answers is printed, and an
# escape sequence in it could rewrite the report or the terminal's title.
# C1 controls go too (U+0080 to U+009F, as UTF-8 writes them; a lone
# byte of theirs is no character to a UTF-8 terminal, and is a part of
# others such as an em dash).
ck_clean() {
  LC_ALL=C sed "s/$ck_c1//g" | LC_ALL=C tr -d '\000-\010\013-\037\177'
}

# ck_line prints a verdict and counts it.
ck_line() { # verdict text
  printf '%-8s %s\n' "$1" "$2" | ck_clean
  case $1 in
    problem) ck_problems=$((ck_problems + 1)) ;;
    warning) ck_warnings=$((ck_warnings + 1)) ;;
  esac
}

# ck_do prints what to do about the line above, indented under it.
ck_do() { printf '         %s\n' "$@" | ck_clean; }

# ck_see points to the troubleshooting guide's section.
ck_see() { printf '         see %s#%s\n' "$ck_guide" "$1"; }

# ck_curl runs curl as the check's browser: a name of its own, bounded in
# time.
ck_curl() {
  curl -sS --connect-timeout 10 --max-time "${ck_max_time:-20}" -A "$ck_agent" "$@"
}

# ck_fetch makes a request and keeps its answer in $ck_tmp/head and
# $ck_tmp/body, setting ck_status (000 when none came), ck_type and
# ck_error (curl's complaint); curl's arguments follow.
ck_fetch() {
  local out
  : >"$ck_tmp/head"
  : >"$ck_tmp/body"
  out=$(ck_curl -D "$ck_tmp/head" -o "$ck_tmp/body" -w '%{http_code} %{content_type}' "$@" 2>"$ck_tmp/err")
  ck_status=${out%% *} ck_type=${out#* }
  [ -n "$ck_status" ] || ck_status=000
  [ "$ck_type" != "$out" ] || ck_type=""
  ck_error=$(head -n 1 "$ck_tmp/err" | sed 's/^curl: ([0-9]*) //')
}

# ck_send posts a JSON body to cgi-bin/post as the page does, with the
# check's cookies (the claim on its nick, which lets it delete its
# messages).
ck_send() { # json
  ck_fetch -X POST -H 'Content-Type: application/json' -H "Origin: $ck_origin" \
    -H "Referer: $ck_page" -H 'Sec-Fetch-Site: same-origin' -H 'Sec-Fetch-Mode: cors' \
    -b "$ck_tmp/jar" -c "$ck_tmp/jar" --data-binary "$1" "${ck_base}cgi-bin/post"
}

# ck_header prints a header of the last response in a head file (all of
# its values, joined by commas).
ck_header() { # name [file]
  local want
  want=$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')
  awk -v want="$want" '
    { sub(/\r$/, "") }
    /^HTTP\// { val = ""; next }
    tolower(substr($0, 1, length(want) + 1)) == want ":" {
      v = substr($0, length(want) + 2)
      sub(/^[ \t]+/, "", v)
      val = (val == "" ? v : val ", " v)
    }
    END { print val }' "${2:-$ck_tmp/head}"
}

# ck_json prints a field of a flat JSON answer: a string's text (\" and \\
# undone, \u003c and kin as the characters), or a number or literal.
ck_json() { # field file
  sed -E -n "s/.*\"$1\":(\"(([^\"\\\\]|\\\\.)*)\"|(-?[0-9]+|true|false|null)).*/\2\4/p" "$2" | head -n 1 |
    sed -e 's/\\u003c/</g; s/\\u003e/>/g; s/\\u0026/\&/g; s/\\"/"/g; s/\\\\/\\/g'
}

# ck_is_json reports whether the last answer is the programs' own JSON.
ck_is_json() { case $ck_type in application/json*) return 0 ;; esac; return 1; }

# ck_is_html reports whether the last answer is a web page.
ck_is_html() {
  case $ck_type in text/html*) return 0 ;; esac
  [ "$(head -c 1 "$ck_tmp/body")" = "<" ]
}

# ck_now_ms prints the time in milliseconds: to the millisecond where the
# shell (bash 5) or perl can tell, else to the second.
ck_now_ms() {
  local t=${EPOCHREALTIME:-}
  if [ -n "$t" ]; then
    t=${t/./}
    echo $((10#$t / 1000))
  elif command -v perl >/dev/null; then
    perl -MTime::HiRes=time -e 'printf "%d\n", time() * 1000'
  else
    echo $(($(date +%s) * 1000))
  fi
}

# ck_host_answer prints the line for an answer to what (a program, or the
# page) that is not the one asked for: the chat's own refusal (its JSON
# sentence), or the web host's answer, said in words, with what to do. An
# answer of the host's like the one before it is said in short.
ck_host_answer() { # what
  local what=$1
  if [ "$ck_status" = 000 ]; then
    ck_line problem "$what: no answer (${ck_error:-the connection failed})"
    ck_do "the web server did not answer in time, or refused the connection: is it running, and is the address right?"
    ck_see no-answer-at-all
    return
  fi
  if ck_is_json && [ "$ck_status" = 429 ]; then
    ck_line warning "$what: the chat's rate limit refused the check ($(ck_json error "$ck_tmp/body")): this address posted much just now; run the check again in a minute"
    return
  fi
  if ck_is_json; then
    ck_line problem "$what refused: $(ck_json error "$ck_tmp/body") (HTTP $ck_status, the chat's own answer)"
    case $ck_status in
      500) ck_do "the programs run but cannot work: the web server's error log has the reason (a setting, or the database's directory not writable)"
        ck_see the-chat-says-it-is-misconfigured ;;
      403) ck_see the-chat-refuses-the-check ;;
      *) ck_see other-answers ;;
    esac
    return
  fi
  if [ -n "$ck_said" ] && [ "${ck_said%% *}" = "$ck_status" ]; then
    ck_line problem "$what: the same answer as ${ck_said#* } (HTTP $ck_status)"
    return
  fi
  ck_said="$ck_status $what"
  if [ "$(head -c 4 "$ck_tmp/body" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
    ck_line problem "$what: the web server sends the program itself as a file (HTTP $ck_status) instead of running it"
    ck_do "cgi-bin/.htaccess is not read (AllowOverride None, or not Apache): the web server must run cgi-bin/post and cgi-bin/stream as programs"
    ck_see 500-internal-server-error
    return
  fi
  case $ck_status in
    403)
      ck_line problem "$what: the web host refused it with its own page (HTTP 403)"
      ck_do "a firewall such as ModSecurity, or the host's rules for cgi-bin/, refuse it before the chat's programs run; the web server's error log names the rule"
      ck_see 403-forbidden ;;
    404)
      ck_line problem "$what is not on this web server (HTTP 404)"
      ck_do "upload cgi-bin/ beside the page (deploy.sh does), or give --check the address of the chat's page itself"
      ck_see 404-not-found ;;
    405)
      ck_line problem "$what: the web server treats it as a file, not a program (HTTP 405)"
      ck_do "cgi-bin/.htaccess is not read (AllowOverride None, or not Apache): the web server must run cgi-bin/post and cgi-bin/stream as programs"
      ck_see 500-internal-server-error ;;
    413)
      ck_line problem "$what: the web host refused the request's size (HTTP 413)"
      ck_see other-answers ;;
    500)
      ck_line problem "$what: the web host did not run the program (HTTP 500, its own page)"
      ck_do "most often: .htaccess may not set Options +ExecCGI (Apache's error log: 'Options not allowed here'), the program is not executable, is built for another machine, or suEXEC refused it (suexec.log)"
      ck_see 500-internal-server-error ;;
    502 | 503 | 504)
      ck_line problem "$what: the chat's programs are not answering (HTTP $ck_status from the web server)"
      ck_do "the daemons may be stopped: systemctl status cgichat@post cgichat@stream (start them with systemctl enable --now …), and check that the web server may use their sockets"
      ck_see 502-bad-gateway-503-504 ;;
    508)
      ck_line problem "$what: the host's limit of processes for this site is reached (HTTP 508, CloudLinux)"
      ck_do "too many requests at once for the plan: lower CHAT_MAX_STREAMS in cgi-bin/cgichat.conf, or ask for more entry processes"
      ck_see 508-resource-limit-is-reached ;;
    *)
      if ck_is_html; then
        ck_line problem "$what: something else answered with a web page (HTTP $ck_status), not the chat's programs"
      else
        ck_line problem "$what: the web host answered HTTP $ck_status${ck_type:+ ($ck_type)} instead of the chat"
      fi
      ck_see other-answers ;;
  esac
}

# ck_split cuts a response saved with curl -i into its head and its body.
ck_split() { # file head body
  awk -v head="$2" -v body="$3" '
    !inbody { line = $0; sub(/\r$/, "", line); print line > head
              if (line == "" && !/^HTTP\//) inbody = 1; next }
    { print > body }' "$1"
  [ -f "$3" ] || : >"$3"
}

# ck_stream_start opens a stream of the check's room in the background,
# its whole answer (head and body) in $ck_tmp/NAME as it arrives.
ck_stream_start() { # name query
  : >"$ck_tmp/$1"
  curl -sS -N -i --compressed --connect-timeout 10 --max-time "$ck_stream_time" -A "$ck_agent" \
    -H 'Accept: text/event-stream' "${ck_base}cgi-bin/stream?$2" >"$ck_tmp/$1" 2>"$ck_tmp/$1.err" &
  ck_stream_pid=$!
}

# ck_stream_stop ends the stream the check opened, if it still runs.
ck_stream_stop() {
  if [ -n "$ck_stream_pid" ]; then
    kill "$ck_stream_pid" 2>/dev/null
    wait "$ck_stream_pid" 2>/dev/null
    ck_stream_pid=""
  fi
}

# ck_wait_for waits up to ms milliseconds for a line matching a pattern
# in a file, or for the background stream to end; it reports whether the
# pattern came.
ck_wait_for() { # pattern file ms
  local until=$(($(ck_now_ms) + $3))
  while :; do
    grep -q -- "$1" "$2" 2>/dev/null && return 0
    if [ -n "$ck_stream_pid" ] && ! kill -0 "$ck_stream_pid" 2>/dev/null; then
      wait "$ck_stream_pid" 2>/dev/null
      ck_stream_pid=""
      grep -q -- "$1" "$2" 2>/dev/null
      return
    fi
    [ "$(ck_now_ms)" -lt "$until" ] || return 1
    sleep 0.05
  done
}

# ck_post_message posts text as the check's nick into its room; on a 201
# it adds the message's id to ck_ids and sets ck_id. A 429 is waited out
# once.
ck_post_message() { # text
  local body="{\"room\":\"$ck_room\",\"nick\":\"$ck_nick\",\"text\":\"$1\"}" pause
  ck_id=""
  ck_send "$body"
  if [ "$ck_status" = 429 ] && ck_is_json; then
    pause=$(ck_header Retry-After)
    case $pause in [0-9] | 1[0-9] | 20) sleep "$pause"; ck_send "$body" ;; esac
  fi
  if [ "$ck_status" = 201 ] && ck_is_json; then
    ck_id=$(ck_json id "$ck_tmp/body")
    ck_ids="$ck_ids $ck_id"
    cp "$ck_tmp/head" "$ck_tmp/post.head"
  fi
}

# ck_check_page loads the page and every file it names, as a browser does.
ck_check_page() {
  local out files="" f n=0 bad="" type want
  out=$(ck_curl -L --max-redirs 5 --compressed -D "$ck_tmp/head" -o "$ck_tmp/body" \
    -w '%{http_code} %{url_effective}' "$ck_url" 2>"$ck_tmp/err")
  ck_status=${out%% *} ck_type=$(ck_header Content-Type)
  ck_error=$(head -n 1 "$ck_tmp/err" | sed 's/^curl: ([0-9]*) //')
  [ -n "$ck_status" ] || ck_status=000
  if [ "$ck_status" = 000 ]; then
    ck_host_answer "the page"
    return 1
  fi
  ck_page=${out#* }
  ck_page=${ck_page%%[?#]*}
  cp "$ck_tmp/head" "$ck_tmp/page.head"
  cp "$ck_tmp/body" "$ck_tmp/page.html"
  if [ "$ck_status" != 200 ]; then
    ck_host_answer "the page ($ck_page)"
  elif ! grep -qE 'cgi-bin|chat\.js' "$ck_tmp/page.html"; then
    ck_line problem "the page: $ck_page is a page, but not the chat's (it loads no chat.js)"
    ck_do "give --check the address of the chat's own page: the folder deploy.sh installed index.html into"
    ck_see 404-not-found
  fi
  # The folder of the page, where cgi-bin/ is.
  case $ck_page in
    */) ck_base=$ck_page ;;
    *)
      if [ "${ck_page#"$ck_origin"}" = "" ]; then
        ck_base=$ck_page/
      else
        ck_base=${ck_page%/*}/
      fi
      ;;
  esac
  [ "$ck_status" = 200 ] || return 0
  # The page's own files, and the modules its scripts import, and theirs.
  files=$(grep -oE '(src|href)="[^"#?]+"' "$ck_tmp/page.html" | sed -E 's/^[a-z]+="(.*)"$/\1/' |
    grep -vE '^([a-z]+:|/)' | sort -u)
  : >"$ck_tmp/seen"
  while :; do
    for f in $files; do
      grep -qxF "$f" "$ck_tmp/seen" && continue
      echo "$f" >>"$ck_tmp/seen"
      case $f in *.js)
        ck_fetch --compressed "$ck_base$f"
        [ "$ck_status" != 200 ] ||
          grep -oE '(from|import) *"\./[A-Za-z0-9_./-]+"' "$ck_tmp/body" | sed -E 's/.*"\.\/(.*)"/\1/' >>"$ck_tmp/imports"
        ;;
      esac
    done
    files=$(cat "$ck_tmp/seen" "$ck_tmp/imports" 2>/dev/null | sort -u)
    [ "$(printf '%s\n' "$files" | wc -l)" -gt "$(wc -l <"$ck_tmp/seen")" ] || break
    [ "$(wc -l <"$ck_tmp/seen")" -lt 50 ] || break
  done
  for f in $files; do
    ck_fetch --compressed "$ck_base$f"
    n=$((n + 1))
    type=${ck_type%%;*}
    case $f in
      *.js) want='text/javascript application/javascript application/x-javascript' ;;
      *.css) want=text/css ;;
      *) want="" ;;
    esac
    if [ "$ck_status" != 200 ]; then
      bad="$bad $f (HTTP $ck_status)"
    elif [ -n "$want" ] && ! printf ' %s ' "$want" | grep -qF " $type "; then
      bad="$bad $f (served as ${type:-no type}: browsers refuse it)"
    fi
  done
  if [ -n "$bad" ]; then
    ck_line problem "the page loads, but not all of its files:$bad"
    ck_do "upload every file of public/ beside index.html (deploy.sh does); .js must be served as text/javascript and .css as text/css"
    ck_see the-page-stays-blank-or-unstyled
  else
    ck_line ok "the page and its $n files load ($ck_page)"
  fi
}

# ck_check_about asks the programs what they run with (the about action).
ck_check_about() {
  local s name value from changed="" line mode
  ck_said=""
  ck_send '{"action":"about"}'
  cp "$ck_tmp/head" "$ck_tmp/about.head"
  if [ "$ck_status" = 200 ] && ck_is_json; then
    ck_hosting=$(ck_json hosting "$ck_tmp/body")
    mode=$(ck_json streamMode "$ck_tmp/body")
    ck_budget=$(ck_json maxStreams "$ck_tmp/body")
    ck_database=$(ck_json database "$ck_tmp/body")
    case $ck_hosting in
      cgi) line="CGI" ;;
      fastcgi-stdin) line="FastCGI on stdin (mod_fcgid)" ;;
      daemon) line="FastCGI daemons" ;;
      *) line=$ck_hosting ;;
    esac
    ck_line ok "the programs answer: cgichat $(ck_json version "$ck_tmp/body") as $line; stream $mode, budget $ck_budget streams, history $(ck_json history "$ck_tmp/body"), database $ck_database"
    # Every setting not at its default, and where it comes from.
    for s in $(grep -oE '\{"name":"CHAT_[A-Z0-9_]+"[^}]*\}' "$ck_tmp/body" | tr -d ' '); do
      name=$(printf '%s' "$s" | sed -E 's/.*"name":"([^"]*)".*/\1/')
      from=$(printf '%s' "$s" | sed -E 's/.*"from":"([^"]*)".*/\1/')
      value=""
      case $s in *'"value":'*) value="=$(printf '%s' "$s" | sed -E 's/.*"value":"([^"]*)".*/\1/')" ;; esac
      case $from in
        default) continue ;;
        file) from=cgichat.conf ;;
        request) from="passed with the request" ;;
      esac
      changed="$changed $name$value ($from),"
    done
    [ -z "$changed" ] || ck_do "settings not at their defaults:${changed%,}"
    if [ "$ck_budget" = 0 ] && [ "$ck_hosting" != daemon ]; then
      ck_line warning "no stream budget (CHAT_MAX_STREAMS=0) where every stream is a process: enough readers reach a shared host's process limit (CloudLinux's 508) for the whole site"
      ck_see 508-resource-limit-is-reached
    fi
    return 0
  fi
  if [ "$ck_status" = 400 ] && ck_is_json && grep -q 'no action' "$ck_tmp/body"; then
    ck_line warning "the programs are older than this check (they do not answer the about action): deploy again to update them"
    ck_see the-programs-are-older-than-the-check
    return 0
  fi
  ck_host_answer "cgi-bin/post"
  # A post would get the same answer: the check posts nothing.
  ck_post_down=1
  return 1
}

# ck_post_test posts the check's test message and says whether it was
# stored; ck_posted_at is when its 201 had come.
ck_post_test() {
  [ -z "$ck_post_down" ] || return 1
  ck_post_message "cgichat check (deploy.sh --check): a test message in a room of its own; safe to delete"
  ck_posted_at=$(ck_now_ms)
  if [ -n "$ck_id" ]; then
    ck_line ok "a post is stored: message $ck_id in room $ck_room, as $ck_nick (the check's own room and nick)"
    return 0
  fi
  ck_host_answer "posting (cgi-bin/post)"
  return 1
}

# ck_need_post posts the test message unless that was tried already, and
# reports whether it is stored.
ck_need_post() {
  [ -n "$ck_posted_at" ] || ck_post_test
  [ -n "$ck_id" ]
}

# ck_check_stream opens a stream of the check's room and posts the test
# message, and sees how it arrives: live, in batch mode, as a poll, or
# held back by the host.
ck_check_stream() {
  local q="room=$ck_room&reader=$ck_reader" t1 mode last slow=0 ready
  ck_stream_start stream "$q"
  ck_wait_for '^event: ready' "$ck_tmp/stream" 3000
  if [ -n "$ck_stream_pid" ] && ! grep -q '^event: ready' "$ck_tmp/stream"; then
    # Nothing for 3 s: a host that holds the stream back, or a slow one,
    # which the test message may yet get through.
    ck_post_test
    if [ -n "$ck_id" ] && ck_wait_for "\"id\":$ck_id," "$ck_tmp/stream" 5000; then
      slow=1
      ck_line warning "the stream is slow to open: nothing came for 3 s, then the test message arrived"
      ck_see messages-arrive-late
    elif [ -n "$ck_stream_pid" ] && ! grep -q '^event: ready' "$ck_tmp/stream"; then
      ck_stream_stop
      ck_check_held
      return
    fi
  fi
  ck_split "$ck_tmp/stream" "$ck_tmp/stream.head" "$ck_tmp/stream.body"
  ck_status=$(awk '/^HTTP\// { s = $2 } END { print s }' "$ck_tmp/stream.head")
  [ -n "$ck_status" ] || ck_status=000
  ck_type=$(ck_header Content-Type "$ck_tmp/stream.head")
  if [ "$ck_status" != 200 ] || ! grep -q '^event: ready' "$ck_tmp/stream.body"; then
    ck_stream_stop
    cp "$ck_tmp/stream.head" "$ck_tmp/head"
    cp "$ck_tmp/stream.body" "$ck_tmp/body"
    ck_error=$(head -n 1 "$ck_tmp/stream.err" | sed 's/^curl: ([0-9]*) //')
    ck_host_answer "the stream (cgi-bin/stream)"
    [ -n "$ck_posted_at" ] || ck_post_test
    return
  fi
  cp "$ck_tmp/stream.head" "$ck_tmp/stream.head.kept"
  ready=$(awk '/^event: ready/ { getline; print; exit }' "$ck_tmp/stream.body")
  mode=$(printf '%s' "$ready" | sed -E -n 's/.*"mode":"([a-z]*)".*/\1/p')
  case $mode in
    live)
      ck_need_post || { ck_stream_stop; return; }
      if ck_wait_for "\"id\":$ck_id," "$ck_tmp/stream" 5000; then
        t1=$(ck_now_ms)
        [ "$slow" = 1 ] ||
          ck_line ok "the stream delivers live: the test message arrived $((t1 > ck_posted_at ? t1 - ck_posted_at : 0)) ms after its post was stored"
      else
        ck_line problem "the stream opened live, but the test message did not arrive within 5 s: the host holds events back"
        ck_do "a front end buffers small writes (fcgiwrap, a proxy, compression): deploy with --stream-mode batch, or fix the server setting"
        ck_see the-stream-is-held-back
      fi
      ck_stream_stop
      ;;
    batch | poll)
      # The first answer in an empty room ends at once with the room's
      # last id; the next one, opened before the post, waits for it
      # (batch), or a poll after the post brings it.
      ck_stream_stop
      ck_split "$ck_tmp/stream" "$ck_tmp/stream.head" "$ck_tmp/stream.body"
      last=$(awk '/^id: / { v = $2 } END { print v }' "$ck_tmp/stream.body")
      [ -n "$last" ] || last=0
      if [ -n "$ck_id" ] && [ "$last" -ge "$ck_id" ]; then last=$((ck_id - 1)); fi
      ck_stream_start stream2 "$q&lastEventId=$last"
      sleep 0.3
      ck_need_post || { ck_stream_stop; return; }
      if ! ck_wait_for "\"id\":$ck_id," "$ck_tmp/stream2" 5000 && [ -z "$ck_stream_pid" ]; then
        # That answer ended before the post (a poll): ask again.
        ck_stream_start stream2 "$q&lastEventId=$last"
        ck_wait_for "\"id\":$ck_id," "$ck_tmp/stream2" 5000
      fi
      if grep -q "\"id\":$ck_id," "$ck_tmp/stream2"; then
        t1=$(ck_now_ms)
        if [ "$mode" = batch ]; then
          ck_line ok "the stream works in batch mode (each answer ends after new messages; the browser asks again at once): the test message arrived $((t1 > ck_posted_at ? t1 - ck_posted_at : 0)) ms after its post was stored"
        else
          ck_line ok "the stream answers as polls (the host's stream budget is taken by other readers now): the test message came with the next poll"
        fi
      else
        ck_line problem "the stream ($mode mode) did not bring the test message within 5 s"
        ck_see the-stream-is-held-back
      fi
      ck_stream_stop
      ;;
    *)
      ck_stream_stop
      [ -n "$ck_posted_at" ] || ck_post_test
      ck_line warning "the stream opened in a mode this check does not know ('$mode'): use the deploy.sh of the same version as the programs"
      ;;
  esac
}

# ck_check_held reports a live stream the host holds back, and sees
# whether batch mode works here instead.
ck_check_held() {
  local advice
  case $ck_hosting in
    fastcgi-stdin) advice="mod_fcgid holds up to 64 KiB of a program's output: deploy with --stream-mode batch (the default for --mode fcgid), or, with access to the server's configuration, add FcgidOutputBufferSize 0 (cgichat-conf/apache-fcgid-live.conf) and keep live" ;;
    daemon) advice="the front end buffers the stream: nginx needs fastcgi_buffering off, Apache mod_proxy_fcgi flushpackets=on, Caddy no encode on cgi-bin/stream (the samples deploy.sh writes have them); or deploy with --stream-mode batch" ;;
    *) advice="something between the program and the browser holds the stream (fcgiwrap, lighttpd's server.stream-response-body 0, compression, a proxy or CDN): deploy with --stream-mode batch, or fix that setting" ;;
  esac
  ck_line problem "the stream is held back: a live stream sent nothing within 8 s (the host buffers the answer until it ends)"
  ck_do "$advice"
  ck_do "meanwhile readers still get messages (the page falls back to batch after 2 s), but every page load holds a process for the stream's whole life"
  [ -n "$ck_id" ] || { ck_see the-stream-is-held-back; return; }
  ck_max_time=10 ck_fetch --compressed -H 'Accept: text/event-stream' \
    "${ck_base}cgi-bin/stream?room=$ck_room&mode=batch&lastEventId=$((ck_id - 1))"
  cp "$ck_tmp/head" "$ck_tmp/stream.head.kept"
  if [ "$ck_status" = 200 ] && grep -q "\"id\":$ck_id," "$ck_tmp/body"; then
    ck_do "batch mode works here: the test message came at once with ?mode=batch"
  else
    ck_do "batch mode did not bring the test message either (HTTP $ck_status)"
  fi
  ck_see the-stream-is-held-back
}

# ck_check_firewall posts text that looks like code, as people write
# about code, and tells the host's firewall's refusal from the chat's. It
# never alters the text to get past a firewall.
ck_check_firewall() {
  local text refused="" passed=0
  for text in 'cgichat check: the <script> tag is how you add js' 'cgichat check: run cat /etc/passwd to see users'; do
    ck_post_message "$text"
    if [ -n "$ck_id" ]; then
      passed=$((passed + 1))
    elif [ "$ck_status" = 403 ] && ! ck_is_json; then
      refused="$refused \"${text#cgichat check: }\","
    else
      ck_host_answer "posting text that looks like code"
      return
    fi
  done
  if [ -n "$refused" ]; then
    ck_line warning "the web host's firewall refuses messages that look like code or commands (its own 403 page for${refused%,})"
    ck_do "readers see 'The web host's firewall refused this message' and must reword it; ordinary text passes"
    ck_do "exempt cgi-bin/post: the hosting panel's ModSecurity switch (cPanel: Security › ModSecurity), or, for admins, a rule exclusion for cgi-bin/post"
    ck_see a-firewall-refuses-messages
  else
    ck_line ok "text that looks like code is not refused by a firewall ($passed samples, such as the <script> tag, stored)"
  fi
}

# ck_delete_messages deletes the check's messages, as their poster may for
# 10 minutes (their tombstones stay in the check's room).
ck_delete_messages() {
  local id deleted=0 failed="" why=""
  [ -n "$ck_ids" ] || return 0
  for id in $ck_ids; do
    ck_send "{\"action\":\"delete\",\"id\":$id}"
    if [ "$ck_status" = 200 ] && ck_is_json; then
      deleted=$((deleted + 1))
    else
      failed="$failed $id"
      why=$(ck_json error "$ck_tmp/body")
      [ -n "$why" ] || why="HTTP $ck_status"
    fi
  done
  if [ -z "$failed" ]; then
    if [ "$deleted" = 1 ]; then
      ck_line ok "the check deleted its test message again (only its tombstone stays, in room $ck_room)"
    else
      ck_line ok "the check deleted its $deleted test messages again (only their tombstones stay, in room $ck_room)"
    fi
    return
  fi
  ck_line warning "the check could not delete its test messages$failed in room $ck_room ($why); no reader sees that room unless they join it"
  case $ck_database in
    mysql) ck_do "to delete them: CALL delete_message(ID); for each, in the database's shell" ;;
    *) ck_do "to delete them, on the host: sqlite3 ~/cgichat-data/chat.db \"DELETE FROM messages WHERE room = '$ck_room'\" (the database's path: cgi-bin/post -check)" ;;
  esac
  ck_do "or, as a moderator on the page: join room $ck_room and delete them"
  ck_see the-checks-test-messages
}

# ck_probe fetches the start of url and sets ck_status and the first bytes
# in $ck_tmp/body, without downloading a whole database.
ck_probe() { # url
  : >"$ck_tmp/head"
  ck_curl -D "$ck_tmp/head" -r 0-63 "$1" 2>/dev/null | head -c 64 >"$ck_tmp/body"
  ck_status=$(awk '/^HTTP\// { s = $2 } END { print s }' "$ck_tmp/head")
  [ -n "$ck_status" ] || ck_status=000
  ck_type=$(ck_header Content-Type)
}

# ck_check_private asks for what must never be served: dotfiles, the
# .htaccess files, the settings file, and the database at every URL it
# would have if it were in a served folder (deploy.sh's former default
# beside the page's folder, a copy uploaded with the page), with its WAL
# files.
ck_check_private() {
  local paths dir rel u magic served="" odd="" tried=0 levels=0 origin_path urls=""
  paths=".htaccess cgi-bin/.htaccess cgi-bin/cgichat.conf .git/config .env chat.db chat.db-wal chat.db-shm cgi-bin/chat.db"
  for u in $paths; do
    urls="$urls $ck_base$u"
  done
  # cgichat-data/ in the page's folder and each folder above it.
  dir=$ck_base
  while [ "$levels" -lt 4 ]; do
    for rel in chat.db chat.db-wal chat.db-shm; do
      urls="$urls ${dir}cgichat-data/$rel"
    done
    origin_path=${dir#"$ck_origin"}
    [ "$origin_path" != / ] && [ -n "$origin_path" ] || break
    dir=$ck_origin${origin_path%/*/}/
    levels=$((levels + 1))
  done
  for u in $urls; do
    ck_probe "$u"
    tried=$((tried + 1))
    case $ck_status in 200 | 206) ;; *) continue ;; esac
    ck_is_html && continue
    magic=$(od -An -tx1 -N16 "$ck_tmp/body" | tr -d ' \n')
    case $u in
      *.db)
        if [ "$magic" = 53514c69746520666f726d6174203300 ]; then
          served="$served $u"
        else
          odd="$odd $u"
        fi
        ;;
      *-wal | *-shm | */cgichat.conf | */.htaccess | */.env | */.git/config)
        [ ! -s "$ck_tmp/body" ] || served="$served $u"
        ;;
    esac
  done
  if [ -n "$served" ]; then
    ck_line problem "anyone can download what must stay private:"
    for u in $served; do ck_do "$u"; done
    case $served in
      *.db* | *-wal* | *-shm*)
        ck_do "a database there holds every message, the nick claims' secret and the bans: move it out of every served folder (sqlite3 OLD \".backup ~/cgichat-data/chat.db\", deploy with --db, then delete the old files), or remove a stray copy"
        ;;
    esac
    case $served in
      *.htaccess* | *cgichat.conf*)
        ck_do "the web server does not read .htaccess here, so the page's folder is not protected: use the server sample deploy.sh wrote (cgichat-conf/) or ask the host for AllowOverride"
        ;;
    esac
    ck_see the-database-or-the-settings-can-be-downloaded
  else
    ck_line ok "nothing private is served: dotfiles, .htaccess, cgi-bin/cgichat.conf and the database's $((tried - 5)) would-be URLs (with -wal and -shm) are refused"
  fi
  if [ -n "$odd" ]; then
    ck_line warning "these URLs answer 200 with something that is not a SQLite database:$odd"
    ck_do "look at what they serve; a database must never be in a served folder"
  fi
}

# ck_check_headers looks at the headers of the programs' answers and of
# the page: the security headers the programs send, caching, compression
# of the stream, HTTPS.
ck_check_headers() {
  local h missing="" v cache host
  h=$ck_tmp/about.head
  [ ! -f "$ck_tmp/post.head" ] || h=$ck_tmp/post.head
  if [ -n "$ck_hosting" ] || [ -f "$ck_tmp/post.head" ]; then
    [ "$(ck_header X-Content-Type-Options "$h")" = nosniff ] || missing="$missing X-Content-Type-Options"
    case $(ck_header Content-Security-Policy "$h") in *"frame-ancestors 'none'"*) ;; *) missing="$missing Content-Security-Policy" ;; esac
    [ -n "$(ck_header X-Frame-Options "$h")" ] || missing="$missing X-Frame-Options"
    case $(ck_header Cache-Control "$h") in *no-store*) ;; *) missing="$missing Cache-Control:no-store" ;; esac
  fi
  if [ -f "$ck_tmp/stream.head.kept" ]; then
    h=$ck_tmp/stream.head.kept
    case $(ck_header Cache-Control "$h") in *no-cache*) ;; *) missing="$missing stream:Cache-Control:no-cache" ;; esac
    v=$(ck_header Content-Encoding "$h")
    if [ -n "$v" ] && [ "$v" != identity ]; then
      ck_line warning "the stream is compressed ($v) though the programs ask for it not to be: many front ends then hold events back"
      ck_do "switch compression off for cgi-bin/stream: Apache SetEnv no-gzip (cgi-bin/.htaccess has it), nginx gzip off, Caddy no encode there"
      ck_see the-stream-is-held-back
    fi
  fi
  if [ -n "$missing" ]; then
    ck_line warning "headers the programs send are missing from their answers:$missing"
    ck_do "something between the programs and the browser drops or replaces them (a proxy, a CDN, the host's header rules)"
    ck_see headers
  elif [ -n "$ck_hosting" ] || [ -f "$ck_tmp/post.head" ]; then
    ck_line ok "the programs' headers arrive (nosniff, frame-ancestors 'none', no-store; the stream no-cache and not compressed)"
  fi
  cache=$(ck_header Cache-Control "$ck_tmp/page.head")
  v=$(printf '%s' "$cache" | sed -E -n 's/.*max-age=([0-9]+).*/\1/p')
  if [ -n "$v" ] && [ "$v" -gt 86400 ]; then
    ck_line warning "the page may be cached for $((v / 86400)) days (Cache-Control: $cache): after an update, readers keep the old page that long"
    ck_see headers
  fi
  host=${ck_origin#*://}
  host=${host%:*}
  case $ck_origin in
    http://*)
      case $host in
        localhost | 127.* | \[::1\]) ;;
        *)
          ck_line warning "the chat is served over plain HTTP: nick claims and moderator sessions travel unencrypted"
          ck_do "serve it over HTTPS (most hosts give a free certificate) and check https://$host/…"
          ck_see headers
          ;;
      esac
      ;;
  esac
}

# ck_cleanup ends what the check started and removes its files.
ck_cleanup() {
  ck_stream_stop
  [ -z "${ck_tmp:-}" ] || rm -rf "$ck_tmp"
}

# check_deployment is deploy.sh --check URL.
check_deployment() { # url
  # No globbing: words from the host's answers (the page's file names,
  # the settings) are split into lists, and a * there must not become the
  # names of this machine's files, sent back to the host as URLs.
  set +e -f
  ck_c1=$(printf '\302[\200-\237]')
  local t missing="" hex
  ck_problems=0 ck_warnings=0 ck_stream_pid="" ck_ids="" ck_id=""
  ck_hosting="" ck_budget="" ck_database="" ck_stream_time=40 ck_posted_at=""
  ck_said="" ck_post_down=""
  if [ $# -ne 1 ] || [ -z "$1" ]; then
    printf 'deploy: --check wants one address, that of the chat'"'"'s page: ./deploy.sh --check https://example.org/chat/\n' >&2
    return 2
  fi
  ck_url=$1
  case $ck_url in
    http://* | https://*) ;;
    *)
      printf 'deploy: --check wants the address of the chat'"'"'s page, beginning with https:// or http:// (got %s)\n' "$ck_url" >&2
      return 2
      ;;
  esac
  for t in curl awk sed grep tr od head cut sort mktemp sleep cat cp rm; do
    command -v "$t" >/dev/null || missing="$missing $t"
  done
  if [ -n "$missing" ]; then
    printf 'deploy: --check needs%s, which this machine lacks. Debian/Ubuntu: apt-get install curl (the others are in coreutils, sed, gawk or mawk, grep); macOS has them all.\n' "$missing" >&2
    return 2
  fi
  ck_guide=$(cd "$(dirname "$0")" && pwd)/docs/troubleshooting.md
  [ -f "$ck_guide" ] || ck_guide="docs/troubleshooting.md (in cgichat's source)"
  ck_tmp=$(mktemp -d "${TMPDIR:-/tmp}/cgichat-check.XXXXXX") || return 2
  trap ck_cleanup EXIT
  trap 'exit 2' INT TERM
  : >"$ck_tmp/jar"
  hex=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
  ck_room=cgichat-check-$hex ck_nick=cgichat-check-$hex
  ck_reader=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  ck_agent="cgichat-check (deploy.sh --check)"
  ck_origin=$(printf '%s' "$ck_url" | sed -E 's#^(https?://[^/?#]+).*#\1#')
  ck_page=$ck_url ck_base=$ck_url

  printf 'cgichat check of %s\n' "$ck_url"
  printf '(as a browser would; a test message goes to room %s, nick %s)\n\n' "$ck_room" "$ck_nick"
  if ck_check_page; then
    ck_origin=$(printf '%s' "$ck_page" | sed -E 's#^(https?://[^/?#]+).*#\1#')
    ck_check_about
    ck_check_stream
    [ -z "$ck_ids" ] || ck_check_firewall
    ck_delete_messages
    ck_check_private
    ck_check_headers
  fi
  ck_stream_stop
  printf '\n%s problem(s), %s warning(s). What each line means and what to do: %s\n' \
    "$ck_problems" "$ck_warnings" "$ck_guide"
  [ "$ck_problems" = 0 ] || return 1
  return 0
}

# deploy.sh --check URL runs the check and nothing else; it needs neither
# Go nor a checkout that builds.
case ${1:-} in
  --check) shift; check_deployment "$@"; exit ;;
  --check=*) ck_arg=${1#--check=}; shift; check_deployment "$ck_arg" "$@"; exit ;;
esac
for arg in "$@"; do
  case $arg in --check | --check=*) die "--check URL takes no other options: ./deploy.sh --check URL" ;; esac
done

# --- Building and staging ----------------------------------------------------

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

# select_compiler sets build_env and cc, what builds for linux/arch:
# go-sqlite3 needs cgo, so a C compiler for the architecture, this
# machine's own or a cross compiler (CC, when set, for either, as for go
# build); and libc_pkg, the package of the C library it links statically.
# why says why arch, for the message when the compiler is missing.
select_compiler() { # arch why
  local arch=$1 why=$2 cross_cc cross_pkg
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
      die "building for linux/$arch ($why) needs the C cross compiler $cross_cc (go-sqlite3 uses cgo), which is not installed. On Debian or Ubuntu: apt-get install $cross_pkg (or set CC to another cross compiler)"
    }
    # Debian's armhf compiler and C library are ARMv7 (hard float).
    [ "$arch" != arm ] || build_env+=(GOARM=7)
  fi
  build_env+=("CC=$cc")
}

# build_programs builds post and stream into dir as static executables
# for linux/arch, with select_compiler's settings and the build tags, and
# checks that they are. -trimpath, -buildvcs=false and an empty build id
# make the binaries depend on the sources and the toolchain alone, not on
# where the checkout is or who owns it (git refuses to read another user's
# repository): an unchanged tree gives unchanged files, and the release
# archives are reproducible.
build_programs() { # arch dir tags
  local arch=$1 dir=$2 tags=$3 prog out hint bin got
  for prog in post stream; do
    bin=$dir/$prog
    if ! out=$(env "${build_env[@]}" go build -trimpath -buildvcs=false \
      -tags "$tags" \
      -ldflags '-buildid= -linkmode external -extldflags -static' \
      -o "$bin" "./cgi-bin/$prog" 2>&1); then
      printf '%s\n' "$out" >&2
      hint=""
      if grep -q 'cannot find -l' <<<"$out"; then
        hint=" A static build needs the C library's static archive (Debian: $libc_pkg, which ${cc%% *} brings; Alpine: musl-dev)."
      fi
      die "building $prog failed.$hint"
    fi
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
}

# stage_page copies the page, every file in public/, into dir, and lists
# its files for the .htaccess and the server samples (page_files,
# page_names). Everything in dir ends up readable by all.
stage_page() { # dir
  local f rel
  [ -f public/index.html ] || die "public/index.html is missing: run deploy.sh from a cgichat checkout"
  page_files=() page_names=()
  while IFS= read -r -d '' f; do
    rel=${f#public/}
    [[ $rel =~ ^[A-Za-z0-9_][A-Za-z0-9._/-]*$ ]] || die "public/$rel: page files need plain names (letters, digits, ._-)"
    install -D -m 0644 "$f" "$1/$rel"
    page_files+=("${rel//./\\.}")
    page_names+=("$(basename "$rel" | sed 's/\./\\./g')")
  done < <(find public -type f ! -path '*/.*' -print0 | sort -z)
  chmod -R u=rwX,go=rX "$1"
}

# render copies a template from contrib/, replacing every @NAME@ it knows
# or is given, and fails on any other.
render() { # template destination [NAME=VALUE...]
  local text kv
  text=$(<"contrib/$1")
  for kv in "${@:3}"; do
    text=${text//@${kv%%=*}@/"${kv#*=}"}
  done
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
  # config.DefaultHeartbeatSeconds, in every mode.
  text=${text//@HEARTBEAT@/5}
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
# settings, then every other one commented out at its default. It is
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
  settings_mode "$1"
}

# settings_mode makes a settings file readable by the programs' user
# alone when they run as the deploying user, else by all.
settings_mode() { # file
  if [ "$deployer" = "$web_user" ]; then
    chmod 0600 "$1"
  else
    chmod 0644 "$1"
  fi
}

# --- Release archives: --package and --from ----------------------------------

# release_archs are the architectures of the release archives, and
# release_fits what each fits, as INSTALL.txt says.
release_archs=(amd64 arm64)
declare -A release_fits=(
  [amd64]=$'64-bit Intel and AMD machines (x86_64): nearly every shared\n  host, and most VPSes and servers'
  [arm64]=$'64-bit ARM machines (aarch64): a Raspberry Pi 3, 4, 5 or Zero 2 W\n  with a 64-bit kernel, and ARM VPSes (Ampere, AWS Graviton)'
)

# release_tags are the build tags of the archives' programs: SQLite only,
# as deploy.sh builds them for a SQLite database.
release_tags='sqlite_omit_load_extension osusergo netgo cgichat_sqlite_only'

# release_db_line is the line of an archive's settings file that
# INSTALL.txt tells people to edit when their host runs CGI programs as a
# user of its own, and that --from replaces with the database it chose.
release_db_line='# CHAT_DB=/home/YOUR-ACCOUNT/cgichat-data/chat.db'

# release_explained comes first in an archive's settings file: the two
# settings a person may need to change, and why.
release_explained=(
  "# The database. The programs keep the chat in a SQLite file they create,"
  "# cgichat-data/chat.db in the home directory of the user they run as."
  "# Most shared hosts run them as your own account (suEXEC): then upload"
  "# cgichat-data/ into your home, beside public_html, and leave this as it"
  "# is. If the page says \"The chat's database cannot be opened\", your host"
  "# runs them as a user of its own: make cgichat-data/ writable by all"
  "# (permissions 777), remove the \"# \" before CHAT_DB below and put the"
  "# full path of your home in place of /home/YOUR-ACCOUNT (INSTALL.txt)."
  "$release_db_line"
  "#"
  "# How many chat pages your host serves live at once, all rooms together;"
  "# past that, pages check for new messages every few seconds instead."
  "# Each live page holds one process. On a plan that caps your processes"
  "# (\"entry processes\", often 20), keep this at about 40 % of the cap;"
  "# 0 means no limit."
  "# CHAT_MAX_STREAMS=8"
)

# check_package_options refuses what --package does not take.
check_package_options() {
  local o
  [ -z "$target" ] || die "--package takes no TARGET (got '$target'): it writes the archives into OUTDIR"
  for o in "${given[@]}"; do
    [ "$o" = --package ] ||
      die "--package takes no other option (got $o): the archives are the same for everyone, who edit their settings file after unpacking"
  done
  [[ $package_dir == /* ]] || package_dir=$PWD/$package_dir
}

# check_from_options refuses what --from does not take: it installs an
# archive as it is.
check_from_options() {
  local o
  for o in "${given[@]}"; do
    case $o in
      --from | --dry-run | --db | --web-user | --arch) ;;
      *) die "--from installs a release archive as it is (plain CGI, with its own settings file) and takes only --dry-run, --db, --web-user and --arch, not $o: for $o, build from source (./deploy.sh $o ... TARGET)" ;;
    esac
  done
  case $db in
    mysql://* | postgres://* | postgresql://*)
      die "--from: the archives' programs have SQLite only; for a database server, build from source: ./deploy.sh --db URL TARGET"
      ;;
  esac
  [[ $from_archive == /* ]] || from_archive=$PWD/$from_archive
}

# sha256 prints the SHA-256 of a file, with sha256sum (GNU) or shasum
# (macOS).
sha256() { # file
  local sum
  if command -v sha256sum >/dev/null; then
    sum=$(sha256sum <"$1")
  elif command -v shasum >/dev/null; then
    sum=$(shasum -a 256 <"$1")
  else
    die "neither sha256sum nor shasum is installed"
  fi
  echo "${sum%% *}"
}

# release_version prints the checkout's version: CGICHAT_VERSION when set,
# else its git tag (git describe --tags) or commit, with -dirty when a file
# differs from the commit or is not in it.
release_version() {
  local v
  if [ -n "${CGICHAT_VERSION:-}" ]; then
    v=$CGICHAT_VERSION
  else
    git -C "$src" rev-parse -q --verify HEAD >/dev/null 2>&1 ||
      die "--package: $src is not a git checkout with a commit, or git may not read it (see git config safe.directory): set CGICHAT_VERSION and SOURCE_DATE_EPOCH"
    v=$(git -C "$src" describe --tags --always --abbrev=12)
    [ -z "$(git --no-optional-locks -C "$src" status --porcelain)" ] || v=$v-dirty
  fi
  [[ $v =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]] ||
    die "--package: the version '$v' may contain only letters, digits and ._+-"
  echo "$v"
}

# release_epoch prints the time every file in the archives carries, in
# seconds since 1970: SOURCE_DATE_EPOCH when set, else the commit's.
release_epoch() {
  local t=${SOURCE_DATE_EPOCH:-}
  if [ -z "$t" ]; then
    git -C "$src" rev-parse -q --verify HEAD >/dev/null 2>&1 ||
      die "--package: $src is not a git checkout with a commit: set SOURCE_DATE_EPOCH"
    t=$(git -C "$src" log -1 --format=%ct)
  fi
  # A zip cannot date anything before 1980.
  [[ $t =~ ^[0-9]+$ ]] && [ "$t" -ge 315532800 ] ||
    die "--package: the time '$t' is not a number of seconds since 1970 after 1980"
  echo "$t"
}

# package_release builds the release archives into out (--package): for
# each architecture, the programs, the page, the .htaccess files for
# mod_cgid and mod_cgi, a settings file and INSTALL.txt, as a .tar.gz and
# a .zip (go run ./cmd/release: reproducible, see internal/release); then
# SHA256SUMS.
package_release() { # out
  local out=$1 version epoch a other name tree sums f
  version=$(release_version)
  epoch=$(release_epoch)
  mkdir -p "$out" || die "cannot create $out"
  package_work=$(mktemp -d)
  trap 'rm -rf "$package_work"' EXIT
  # Each architecture gets its own compiler: CC could name only one.
  unset CC
  # What the templates say for plain CGI, and for a host not known yet.
  local docroot="" db="" web_user="" web_group="" apache_listen="" listen_host="" listen_port=""
  local handler=cgi-script wake_default=${release_db_line#\# CHAT_DB=}-wake poll_default=250
  say "packaging cgichat $version, every file dated $epoch (the commit's time, in seconds since 1970)"
  for a in "${release_archs[@]}"; do
    name=cgichat-$version-linux-$a
    tree=$package_work/$name
    select_compiler "$a" "--package"
    say "building post and stream: static linux/$a binaries (cgo with $cc, go-sqlite3)"
    mkdir -p "$tree/chat/cgi-bin" "$tree/cgichat-data"
    build_programs "$a" "$tree/chat/cgi-bin" "$release_tags"
    stage_page "$tree/chat"
    render htaccess/docroot.htaccess "$tree/chat/.htaccess"
    render htaccess/cgi-bin.htaccess "$tree/chat/cgi-bin/.htaccess"
    release_settings "$tree/chat/cgi-bin/cgichat.conf"
    render htaccess/deny-all.htaccess "$tree/cgichat-data/.htaccess"
    other=amd64
    [ "$a" != amd64 ] || other=arm64
    render INSTALL.txt "$tree/INSTALL.txt" "VERSION=$version" "ARCH=$a" "FITS=${release_fits[$a]}" \
      "OTHER_ARCH=$other" "OTHER_FITS=${release_fits[$other]}" "DB_LINE=$release_db_line"
    install -m 0755 deploy.sh "$tree/deploy.sh"
    # Run here: whatever GOOS and GOARCH say.
    CGO_ENABLED=0 GOOS= GOARCH= go run ./cmd/release -root "$tree" -name "$name" -mtime "$epoch" -out "$out" >/dev/null ||
      die "writing the archives of $name failed"
    say "wrote $out/$name.tar.gz and $name.zip"
  done
  sums=$out/.SHA256SUMS.new
  for a in "${release_archs[@]}"; do
    for f in "cgichat-$version-linux-$a.tar.gz" "cgichat-$version-linux-$a.zip"; do
      printf '%s  %s\n' "$(sha256 "$out/$f")" "$f"
    done
  done >"$sums"
  mv "$sums" "$out/SHA256SUMS"
  say "wrote $out/SHA256SUMS"
}

# release_settings writes an archive's settings file from
# contrib/cgichat.conf: every setting commented out, the two a person may
# need to change first, explained (release_explained).
release_settings() { # destination
  local settings=(cgichat-release-settings) line
  render cgichat.conf "$1.template"
  while IFS= read -r line; do
    case $line in
      cgichat-release-settings) printf '%s\n' "${release_explained[@]}" ;;
      "# CHAT_MAX_STREAMS="*) ;; # explained first
      *) printf '%s\n' "$line" ;;
    esac
  done <"$1.template" >"$1"
  rm "$1.template"
  chmod 0644 "$1"
}

# from_open checks the archive of --from against the SHA256SUMS beside it,
# unpacks it into the stage and checks that its programs are for arch, as
# TARGET needs. It sets from_tree (the unpacked tree), from_name and
# from_version.
from_open() {
  local want got top f a hint sums
  from_name=$(basename "$from_archive")
  [ -f "$from_archive" ] || die "--from: there is no file $from_archive"
  case $from_name in
    cgichat-*-linux-*.tar.gz) ;;
    cgichat-*-linux-*.zip) die "--from takes the .tar.gz archive, which keeps the programs executable: ${from_name%.zip}.tar.gz" ;;
    *) die "--from: $from_name is not a cgichat release archive (cgichat-VERSION-linux-ARCH.tar.gz, from deploy.sh --package)" ;;
  esac
  top=${from_name%.tar.gz}
  sums=$(dirname "$from_archive")/SHA256SUMS
  if [ -f "$sums" ]; then
    # A SHA256SUMS saved on Windows ends its lines with CR.
    want=$(awk -v n="$from_name" '{ sub(/\r$/, "") } $2 == n || $2 == "*" n { print $1 }' "$sums")
    [ -n "$want" ] || die "$sums does not list $from_name: it is another release's. Put the archive's own SHA256SUMS beside it"
    got=$(sha256 "$from_archive")
    [ "$got" = "$want" ] ||
      die "$from_name is damaged or not the released file: its SHA-256 is $got, and $sums says $want. Download it again"
    say "checked: $from_name matches $sums"
  else
    warn "no SHA256SUMS beside $from_archive: its checksum is not checked"
  fi
  mkdir "$stage/archive"
  tar -xzf "$from_archive" -C "$stage/archive" --no-same-owner || die "cannot unpack $from_archive"
  from_tree=$stage/archive/$top
  for f in chat/index.html chat/cgi-bin/post chat/cgi-bin/stream chat/cgi-bin/cgichat.conf; do
    [ -f "$from_tree/$f" ] || die "$from_name holds no $top/$f: it is not a cgichat release archive"
  done
  a=$(elf_arch "$from_tree/chat/cgi-bin/post")
  if [ "$a" != "$arch" ]; then
    case $arch in
      amd64 | arm64) hint="use ${top%-linux-*}-linux-$arch.tar.gz" ;;
      *) hint="there is no release archive for it: build from source, ./deploy.sh --arch $arch TARGET" ;;
    esac
    die "$from_name holds programs for linux/$a, and TARGET needs linux/$arch ($arch_why): $hint"
  fi
  from_version=${top#cgichat-}
  from_version=${from_version%-linux-*}
  say "installing cgichat $from_version for linux/$arch from $from_name ($arch_why): nothing to build"
}

# from_settings reads the settings file TARGET has, which --from keeps as
# it is (from_conf=kept): the database is its CHAT_DB, or without one the
# programs' own default, ~/cgichat-data/chat.db of their user. Without a
# settings file (from_conf=new), the archive's comes, with CHAT_DB set to
# --db or the default place.
from_settings() {
  local conf=$docroot/cgi-bin/cgichat.conf line file_db=""
  from_conf=new
  on_target test -f "$conf" || return 0
  from_conf=kept
  while IFS= read -r line; do
    line=$(sed -E 's/^[[:space:]]+//; s/[[:space:]]*=[[:space:]]*/=/; s/[[:space:]]+$//' <<<"$line")
    [ "${line%%=*}" = CHAT_DB ] || continue
    file_db=${line#*=}
    [[ ! $file_db =~ ^\"(.*)\"$|^\'(.*)\'$ ]] || file_db=${BASH_REMATCH[1]}${BASH_REMATCH[2]}
  done < <(on_target active_settings "$conf")
  if [ -z "$file_db" ]; then
    [ -z "$db" ] ||
      die "$conf sets no CHAT_DB, and --from keeps that file as it is: the programs use their default, ~/cgichat-data/chat.db of $web_user. Drop --db, or set CHAT_DB there first"
    [ "$kind" = home ] ||
      die "$conf sets no CHAT_DB, so the programs use their default, ~/cgichat-data/chat.db of $web_user, which cannot be used here: $default_why. Set CHAT_DB there to a path outside the served tree that $web_user may write, then run deploy.sh --from again"
    db=$default_dir/chat.db
    say "settings: $conf is kept as it is; it sets no CHAT_DB, so the database is the programs' default, $db"
    return
  fi
  case $file_db in
    mysql://* | postgres://* | postgresql://*)
      die "$conf puts the chat on a database server, and the archives' programs have SQLite only: build from source, ./deploy.sh --db URL TARGET"
      ;;
    /*) ;;
    *) die "$conf sets CHAT_DB=$file_db, a relative path, which the programs take from the directory they run in: make it absolute, then run deploy.sh --from again" ;;
  esac
  [ -z "$db" ] || [ "$db" = "$file_db" ] ||
    die "$conf sets CHAT_DB=$file_db, and --from keeps that file as it is: drop --db $db, or edit CHAT_DB there first"
  db=$file_db
  say "settings: $conf is kept as it is; its database: $db"
}

# stage_from_archive stages the archive's chat/ for TARGET, as it is; the
# settings file only for a TARGET without one, with CHAT_DB set.
stage_from_archive() {
  local conf=$stage/docroot/cgi-bin/cgichat.conf line set=0
  cp -R "$from_tree/chat/." "$stage/docroot/"
  chmod -R u=rwX,go=rX "$stage/docroot"
  if [ "$from_conf" = kept ]; then
    rm "$conf"
    return
  fi
  while IFS= read -r line; do
    if [ "$line" = "$release_db_line" ]; then
      printf 'CHAT_DB=%s\n' "$db"
      set=1
    else
      printf '%s\n' "$line"
    fi
  done <"$conf" >"$conf.new"
  [ "$set" = 1 ] || printf 'CHAT_DB=%s\n' "$db" >>"$conf.new"
  mv "$conf.new" "$conf"
  settings_mode "$conf"
  say "settings: the archive's cgi-bin/cgichat.conf, with CHAT_DB=$db"
}

# --- Options -----------------------------------------------------------------

mode=cgi stream_mode="" db="" web_user="" conf_dir="" dry_run=0 arch=""
socket_dir=/run/cgichat fcgiwrap_socket=/run/fcgiwrap.socket
http_listen=80 server_name=chat.example.org
fcgiwrap_children=16
extra_env=()
target="" package_dir="" from_archive=""
given=() # the options given, which --package and --from check
need_value() { [ $# -ge 2 ] || die "$1 needs a value (see --help)"; }
while [ $# -gt 0 ]; do
  [[ $1 != -* ]] || given+=("${1%%=*}")
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
    --package) need_value "$@"; package_dir=$2; shift ;;
    --from) need_value "$@"; from_archive=$2; shift ;;
    --mode=* | --stream-mode=* | --db=* | --arch=* | --web-user=* | --env=* | --conf-dir=* | \
      --socket-dir=* | --fcgiwrap-socket=* | --http-listen=* | --server-name=* | --package=* | --from=*)
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
if [ -n "$package_dir" ]; then
  check_package_options
else
  [ -n "$target" ] || die "no TARGET given. Usage: ./deploy.sh [options] TARGET (see --help)"
  [ -z "$from_archive" ] || check_from_options
fi

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
  target_path=${BASH_REMATCH[2]}
  # As for ssh and rsync, a relative path starts in the account's home,
  # and so does ~/ written out: no shell expands it after the colon, and
  # deploy.sh passes paths on quoted.
  case $target_path in "~") target_path="" ;; "~/"*) target_path=${target_path#"~/"} ;; esac
  : "${target_path:=.}"
fi

# --- Tools -------------------------------------------------------------------

cd "$(dirname "$0")"
src=$PWD
host_arch=""
if [ -z "$from_archive" ]; then
  command -v go >/dev/null || die "Go is not installed (https://go.dev/dl/); the build needs Go 1.26 or later"
  host_arch=$(go env GOHOSTARCH)
fi
[ -z "$package_dir" ] || {
  package_release "$package_dir"
  exit 0
}
if [ -n "$remote_host" ]; then
  command -v rsync >/dev/null || die "rsync is not installed; it copies to $remote_host"
fi
read -r -a rsh <<<"${RSYNC_RSH:-ssh}"

# The programs are built for the processor of the machine they run on:
# --arch, else that machine's as uname -m names it. Static binaries need
# nothing of its C library, so a 64-bit kernel under a 32-bit system (as
# Raspberry Pi OS ships) runs the arm64 ones.
if [ -n "$arch" ]; then
  arch_why="--arch"
  # Said, not refused: TARGET may be a card or a share for another machine.
  if [ -n "$remote_host" ]; then
    machine=$("${rsh[@]}" "$remote_host" uname -m 2>/dev/null) || machine=""
  else
    machine=$(uname -m 2>/dev/null) || machine=""
  fi
  case $arch:$machine in
    amd64:x86_64 | amd64:amd64 | arm64:aarch64 | arm64:arm64 | arm:armv[678]* | arm:aarch64 | *:) ;;
    *) warn "building for linux/$arch (--arch), but ${remote_host:-this machine} is $machine: the programs will not run there (the web server answers 500, its log says 'Exec format error'), only on a $arch machine that serves TARGET. Leave out --arch to build for $machine" ;;
  esac
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

# A build needs a C compiler; an archive brings the programs.
[ -n "$from_archive" ] || select_compiler "$arch" "$arch_why"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
[ -z "$from_archive" ] || from_open

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
    case ${d##*/} in public_html | www | htdocs | httpdocs | html | web | public | http | wwwroot) found=$d ;; esac
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

# writable_dir_args sets how (in the caller's scope) to the options of
# install -d that make a directory user may write in: as root, owned by
# user:group with mode; as user, with mode; as a member of group, setgid
# to group with group_mode. It fails when this user can do none of these.
writable_dir_args() { # mode group_mode user group
  if [ "$(id -u)" = 0 ]; then
    how=(-m "$1" -o "$3" -g "$4")
  elif [ "$(id -un)" = "$3" ]; then
    how=(-m "$1")
  elif id -Gn | tr ' ' '\n' | grep -qx "$4"; then
    how=(-m "$2" -g "$4")
  else
    return 1
  fi
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
    if ! writable_dir_args 0750 2770 "$user" "$group"; then
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

# prepare_tail_dir creates the chat's tail/ folder, writable by the
# programs' user: there they keep, for readers past the stream budget, a
# file per room that the web server serves itself, so that those readers
# poll without starting a program each time. Without it they do.
prepare_tail_dir() { # docroot user group dry_run
  local dir=$1/tail user=$2 group=$3 act=run how
  [ "$4" = 0 ] || act=would
  if [ -d "$dir" ]; then
    if [ "$(stat -c %U "$dir")" != "$user" ] && [ "$(id -u)" = 0 ]; then
      echo "deploy: $act: chown $user:$group $dir (the programs write the rooms' tail files there)"
      [ "$act" != run ] || chown "$user:$group" "$dir"
    fi
    return 0
  fi
  if ! writable_dir_args 0755 2775 "$user" "$group"; then
    echo "deploy: note: cannot give $dir to $user (not root, not in group $group): readers past the stream budget will start a program at every poll. As root: install -d -m 0755 -o $user -g $group $dir" >&2
    return 0
  fi
  echo "deploy: $act: install -d ${how[*]} $dir (the rooms' tail files, which readers past the stream budget poll)"
  [ "$act" != run ] || install -d "${how[@]}" "$dir"
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
    "${rsh[@]}" "$remote_host" bash -s <<<"$(declare -f resolve_target foreign_htaccess served_by served_words data_facts writable_dir_args prepare_data_dir prepare_tail_dir active_settings suexec_tree run_check)
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
  die "found no place for the database outside the served tree: $default_why. Choose one with --db, in a directory $web_user can write that is not below a directory named public_html, www, htdocs, httpdocs, html, web, public, http or wwwroot (for example --db /home/$web_user/cgichat-data/chat.db)"
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

# --from keeps a settings file TARGET has, and its database.
[ -z "$from_archive" ] || from_settings

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

# --- Build and stage ---------------------------------------------------------

# stage_build builds the programs for TARGET into the stage, with the
# page, the .htaccess files and the settings file, and the server samples
# of the mode.
stage_build() {
  mkdir -p "$stage/conf"
  chmod 0755 "$stage/conf"
  say "building post and stream: static linux/$arch binaries ($arch_why; cgo with $cc, go-sqlite3)"
  # For a SQLite database the MySQL and PostgreSQL drivers stay out: 40 %
  # less binary, and less memory in every CGI process (README, Performance).
  local tags='sqlite_omit_load_extension osusergo netgo'
  [ -n "$db_url" ] || tags="$tags cgichat_sqlite_only"
  build_programs "$arch" "$stage/docroot/cgi-bin" "$tags"
  say "checked: post and stream are statically linked linux/$arch executables"
  stage_page "$stage/docroot"

  # The settings of the programs, written into cgi-bin/cgichat.conf, which
  # they read in every mode. (nginx + fcgiwrap runs the stream in batch
  # mode by a fastcgi_param of its own: see contrib/nginx/fcgiwrap.conf.)
  db_settings=("CHAT_DB=$db")
  wake_default=$db-wake poll_default=250
  if [ -n "$db_url" ]; then
    db_settings=("CHAT_DB=$db_url" "CHAT_WAKE_DIR=$data_dir/wake")
    wake_default=$data_dir/wake poll_default=25
  fi
  settings=("${db_settings[@]}" "CHAT_STREAM_MODE=$stream_mode" "${extra_env[@]}")

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
  local line keep
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
}

deployer=$(on_target id -un) || die "cannot run id -un on ${remote_host:-this machine}"
mkdir -p "$stage/docroot/cgi-bin"
chmod 0755 "$stage/docroot" "$stage/docroot/cgi-bin"
if [ -n "$from_archive" ]; then
  stage_from_archive
else
  stage_build
fi

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
  [ -d "$stage/${pair%%:*}" ] || continue # --from writes no samples
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
# Tail files: for SQLite (one web host) and the modes with a stream budget.
[ -n "$db_url" ] || [ "$mode" = daemon ] ||
  on_target prepare_tail_dir "$docroot" "$web_user" "$web_group" "$dry_run"

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
    # A release archive brings no server samples.
    [ -n "$from_archive" ] || {
      say "nginx + fcgiwrap: $conf_dir/nginx-fcgiwrap.conf and $conf_dir/fcgiwrap.default"
      say "lighttpd: $conf_dir/lighttpd-cgi.conf"
      say "  (install a sample again when an update changed it: a new version may serve more, such as tail/)"
    }
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
