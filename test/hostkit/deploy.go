package hostkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// source is a copy of the checkout that every deployment comes from, taken
// once: in a working tree shared with others, a file edited while the
// tests run must not make two deployments of one run differ.
var source struct {
	once sync.Once
	dir  string
	err  error
}

// skipped are the checkout's directories the build does not need: git's,
// and the outputs of devserver and the e2e tests.
var skipped = map[string]bool{".git": true, ".local": true, "test-artifacts": true}

// SourceDir returns the copy of the checkout, making it on first use.
// Call RemoveSource when done (TestMain, or a command's exit).
func SourceDir(t T) string {
	t.Helper()
	source.once.Do(func() { source.dir, source.err = copyCheckout() })
	if source.err != nil {
		t.Fatalf("copying the checkout: %v", source.err)
	}
	return source.dir
}

// RemoveSource removes the copy of the checkout, if one was made.
func RemoveSource() {
	if source.dir != "" {
		os.RemoveAll(source.dir)
	}
}

// checkoutRoot returns the directory holding cgichat's go.mod and
// deploy.sh: the working directory or the nearest parent that does.
func checkoutRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		_, errMod := os.Stat(filepath.Join(dir, "go.mod"))
		_, errDeploy := os.Stat(filepath.Join(dir, "deploy.sh"))
		if errMod == nil && errDeploy == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no directory with go.mod and deploy.sh above the working directory")
		}
		dir = parent
	}
}

// copyCheckout copies the checkout into a new temporary directory that
// every user may read.
func copyCheckout() (string, error) {
	root, err := checkoutRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "cgichat-source-")
	if err != nil {
		return "", err
	}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		// A file removed while the copy is made is left out.
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		switch {
		case d.IsDir() && skipped[d.Name()]:
			return filepath.SkipDir
		case d.IsDir():
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		case !d.Type().IsRegular():
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), b, fi.Mode().Perm())
	})
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("%s to %s: %w", root, dir, err)
	}
	return dir, nil
}

// deployTimeout bounds one run of deploy.sh, well above the first (slow)
// static build of go-sqlite3.
const deployTimeout = 5 * time.Minute

// goSettings are the Go settings of the tests' own go command that
// deploy.sh's must share whatever HOME a test gives it: the go.env file,
// the build cache (a cold one costs a minute per build), the module cache
// (the proxy may be out of reach) and the configuration directory, where
// Go keeps its telemetry counters (else it makes HOME/.config).
var goSettings = sync.OnceValues(func() ([]string, error) {
	config, err := os.UserConfigDir()
	if err != nil {
		return nil, err
	}
	names := []string{"GOENV", "GOCACHE", "GOMODCACHE", "GOPATH"}
	out, err := exec.Command("go", append([]string{"env"}, names...)...).Output()
	if err != nil {
		return nil, fmt.Errorf("go env: %w", err)
	}
	values := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(values) != len(names) {
		return nil, fmt.Errorf("go env printed %q for %v", out, names)
	}
	kv := []string{"XDG_CONFIG_HOME=" + config}
	for i, name := range names {
		kv = append(kv, name+"="+values[i])
	}
	return kv, nil
})

// RunDeploy runs the source copy's deploy.sh with args and extra
// environment (NAME=value), returning its combined output.
func RunDeploy(t T, env []string, args ...string) (string, error) {
	t.Helper()
	goEnv, err := goSettings()
	if err != nil {
		t.Fatalf("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deployTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(SourceDir(t), "deploy.sh"), args...)
	cmd.Env = append(append(os.Environ(), goEnv...), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

var warm sync.Once

// WarmBuild runs one dry deployment before any other, so that the first
// (slow) static build of go-sqlite3 happens once, not in every parallel
// deployment at the same time.
func WarmBuild(t T) {
	t.Helper()
	warm.Do(func() {
		dir, err := os.MkdirTemp("", "cgichat-warm-")
		if err != nil {
			t.Fatalf("%v", err)
		}
		defer os.RemoveAll(dir)
		// HOME in dir: the database's default may be the home of the
		// user the programs run as, who may be the caller.
		env := []string{"HOME=" + dir}
		if out, err := RunDeploy(t, env, "--dry-run", "--web-user", ServerUser(t).Name, filepath.Join(dir, "docroot")); err != nil {
			t.Fatalf("deploy.sh --dry-run: %v\n%s", err, out)
		}
	})
}
