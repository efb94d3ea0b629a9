package hostkit

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// unit is what hostkit takes from the systemd unit deploy.sh writes: the
// user, the environment and the command of each daemon.
type unit struct {
	user, group string
	env         []string // NAME=value
	execStart   string   // with %i for the instance: post or stream
}

// readUnit parses conf/cgichat@.service the way systemd reads the few
// settings needed here.
func readUnit(t T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer f.Close()
	var u unit
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(key, "#") {
			continue
		}
		switch key {
		case "User":
			u.user = value
		case "Group":
			u.group = value
		case "Environment":
			// systemd reads %% as %.
			u.env = append(u.env, strings.ReplaceAll(value, "%%", "%"))
		case "ExecStart":
			u.execStart = value
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%v", err)
	}
	if u.user == "" || u.execStart == "" {
		t.Fatalf("%s: no User= or ExecStart=", path)
	}
	return u
}

// StartDaemons starts cgichat@post and cgichat@stream as the unit says:
// its command with %i expanded, its environment, its user.
func StartDaemons(t T, h *Host) []*Proc {
	t.Helper()
	u := readUnit(t, filepath.Join(h.ConfDir, "cgichat@.service"))
	if g, e := u.user, h.User.Name; g != e {
		t.Fatalf("the unit runs the daemons as %q, want %q", g, e)
	}
	var procs []*Proc
	for _, inst := range []string{"post", "stream"} {
		args := strings.Fields(strings.ReplaceAll(u.execStart, "%i", inst))
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, u.env...)
		h.User.RunAs(cmd)
		logPath := filepath.Join(h.LogDir, "daemon-"+inst+".log")
		h.logs = append(h.logs, logPath)
		p := StartProc(t, "cgichat@"+inst, cmd, logPath)
		sock := listenPath(t, args)
		WaitFor(t, p, logPath, inst+"'s socket", 10*time.Second, Listening("unix", sock))
		procs = append(procs, p)
	}
	return procs
}

// listenPath returns the socket path of a daemon's -listen unix:PATH.
func listenPath(t T, args []string) string {
	t.Helper()
	for i, a := range args[:len(args)-1] {
		if a == "-listen" {
			if path, ok := strings.CutPrefix(args[i+1], "unix:"); ok {
				return path
			}
		}
	}
	t.Fatalf("ExecStart %q has no -listen unix:PATH", args)
	return ""
}
