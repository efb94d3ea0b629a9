package hostkit

import (
	"os/exec"
	"path/filepath"
	"time"
)

// CaddyBin is where Debian installs Caddy.
const CaddyBin = "/usr/bin/caddy"

// caddyBase is the Caddy setup's main Caddyfile: no admin endpoint, no
// automatic HTTPS, nothing saved outside the host's directory, and the
// site block deploy.sh wrote, imported as it is.
const caddyBase = `{
	admin off
	auto_https off
	storage file_system {{base}}/caddy/data
}
import {{sample}}
`

// CaddyDaemon runs Caddy with the sample Caddyfile in front of the
// daemons, as the server's user (Caddy has no setting for it).
func CaddyDaemon(t T, h *Host) []*Proc {
	t.Helper()
	daemons := StartDaemons(t, h)
	dir := filepath.Join(h.Base, "caddy")
	MustMkdir(t, dir, 0o755)
	MustMkdir(t, filepath.Join(dir, "data"), 0o700)
	h.User.Own(t, filepath.Join(dir, "data"))
	path := filepath.Join(dir, "Caddyfile")
	MustWrite(t, path, expand(caddyBase, map[string]string{
		"base":   h.Base,
		"sample": filepath.Join(h.ConfDir, "Caddyfile"),
	}), 0o644)
	// Caddy finds its home and data directories through the environment.
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "XDG_CONFIG_HOME=" + dir + "/data", "XDG_DATA_HOME=" + dir + "/data"}
	args := []string{"--config", path, "--adapter", "caddyfile"}
	validate := exec.Command(CaddyBin, append([]string{"validate"}, args...)...)
	validate.Env = env
	h.User.RunAs(validate)
	if out, err := validate.CombinedOutput(); err != nil {
		t.Fatalf("caddy validate: %v\n%s", err, out)
	}
	cmd := exec.Command(CaddyBin, append([]string{"run"}, args...)...)
	cmd.Env = env
	h.User.RunAs(cmd)
	logPath := filepath.Join(h.LogDir, "caddy.log")
	h.logs = append(h.logs, logPath)
	p := StartProc(t, "caddy", cmd, logPath)
	WaitFor(t, p, logPath, "Caddy listening", 15*time.Second, Listening("tcp", h.Addr()))
	return append(daemons, p)
}
