package hosts

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cgichat/test/cgihost"
	"cgichat/test/contract"
	"cgichat/test/hostkit"
)

// Emulators run programs built for another architecture, with no binfmt
// registration: the CGI host executes the emulator with the program.
const (
	qemuARM64 = "/usr/bin/qemu-aarch64-static"
	qemuARM   = "/usr/bin/qemu-arm-static"
)

// TestDeployArm64 deploys with --arch arm64, as for a Raspberry Pi or an
// ARM VPS, checks the static aarch64 binaries, and holds them to the core
// of the contract as CGI children under qemu. It then deploys to a remote
// machine whose uname -m says aarch64 and checks that arm64 is what it
// builds without being asked.
func TestDeployArm64(t *testing.T) {
	t.Parallel()
	hostkit.RequireTools(t, qemuARM64, "/usr/bin/aarch64-linux-gnu-gcc")
	base := t.TempDir()
	docroot := filepath.Join(base, "docroot")
	began := time.Now()
	out, err := deployIn(t, base, "--arch", "arm64", "--web-user", hostkit.ServerUser(t).Name, docroot)
	if err != nil {
		t.Fatalf("deploy.sh --arch arm64: %v\n%s", err, out)
	}
	t.Logf("deploy.sh --arch arm64 took %v", time.Since(began).Round(time.Second))
	for _, want := range []string{
		"static linux/arm64 binaries (--arch; cgo with aarch64-linux-gnu-gcc",
		"checked: post and stream are statically linked linux/arm64 executables",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output does not say %q:\n%s", want, out)
		}
	}
	for _, prog := range []string{"post", "stream"} {
		checkStatic(t, filepath.Join(docroot, "cgi-bin", prog), "arm64")
	}

	t.Run("Contract", func(t *testing.T) {
		began := time.Now()
		t.Cleanup(func() { t.Logf("the contract's core under qemu took %v", time.Since(began).Round(time.Second)) })
		contract.RunCore(t, emulatedStart(qemuARM64, docroot))
	})

	t.Run("RemoteDefault", func(t *testing.T) {
		base := t.TempDir()
		out, err := hostkit.RunDeploy(t, fakeSSH(t, base, "aarch64"), "--dry-run", "me@example.org:"+filepath.Join(base, "docroot"))
		if err != nil {
			t.Fatalf("deploy.sh to an aarch64 machine: %v\n%s", err, out)
		}
		if want := "static linux/arm64 binaries (the architecture of me@example.org, aarch64;"; !strings.Contains(out, want) {
			t.Errorf("the output does not say %q:\n%s", want, out)
		}
	})
}

// TestDeployArm32 deploys with --arch arm (32-bit ARMv7, as Debian's armhf
// cross compiler builds) and runs the programs under qemu: a post, and a
// stream's history that holds it.
func TestDeployArm32(t *testing.T) {
	t.Parallel()
	hostkit.RequireTools(t, qemuARM, "/usr/bin/arm-linux-gnueabihf-gcc")
	base := t.TempDir()
	docroot := filepath.Join(base, "docroot")
	out, err := deployIn(t, base, "--arch", "arm", "--web-user", hostkit.ServerUser(t).Name, docroot)
	if err != nil {
		t.Fatalf("deploy.sh --arch arm: %v\n%s", err, out)
	}
	for _, prog := range []string{"post", "stream"} {
		checkStatic(t, filepath.Join(docroot, "cgi-bin", prog), "arm")
	}
	d := emulatedStart(qemuARM, docroot)(t, nil)
	m := d.Post(t, "lobby", "ada", "from a 32-bit ARM")
	s := contract.Open(t, d.StreamURL(nil), nil)
	if got := s.Until(t, "ready", 10*time.Second); len(got) != 1 || got[0] != m {
		t.Errorf("history = %+v, want just %+v", got, m)
	}
}

// emulatedStart returns a contract.Start that runs the deployed programs
// in docroot as CGI children under emulator, each deployment on a new
// database. As with any CGI stream, a 1 s heartbeat lets a stream notice
// soon that its reader left.
func emulatedStart(emulator, docroot string) contract.Start {
	return func(t *testing.T, env map[string]string) *contract.Deployment {
		db := filepath.Join(t.TempDir(), "chat.db")
		settings := map[string]string{"CHAT_DB": db, "CHAT_RATE_LIMIT": "off", "CHAT_HEARTBEAT_SECONDS": "1"}
		maps.Copy(settings, env)
		var kv []string
		for k, v := range settings {
			kv = append(kv, k+"="+v)
		}
		mux := http.NewServeMux()
		for _, prog := range []string{"post", "stream"} {
			mux.Handle("/cgi-bin/"+prog, cgihost.Emulated(emulator, filepath.Join(docroot, "cgi-bin", prog), kv))
		}
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		return &contract.Deployment{URL: srv.URL, DB: db}
	}
}
