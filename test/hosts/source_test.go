package hosts

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"cgichat/internal/dbtest"
)

// source is a copy of the checkout that every test deploys from, taken
// once: in a working tree shared with others, a file edited while the tests
// run must not make two deployments of one test differ.
var source struct {
	once sync.Once
	dir  string
	err  error
}

// skipped are the checkout's directories the build does not need: git's,
// and the outputs of devserver and the e2e tests.
var skipped = map[string]bool{".git": true, ".local": true, "test-artifacts": true}

func TestMain(m *testing.M) {
	code := dbtest.Main(m)
	if source.dir != "" {
		os.RemoveAll(source.dir)
	}
	os.Exit(code)
}

// sourceDir returns the copy of the checkout, making it on first use.
func sourceDir(t *testing.T) string {
	t.Helper()
	source.once.Do(func() { source.dir, source.err = copyCheckout() })
	if source.err != nil {
		t.Fatalf("copying the checkout: %v", source.err)
	}
	return source.dir
}

// copyCheckout copies the checkout holding this test (two levels up) into a
// new temporary directory that every user may read.
func copyCheckout() (string, error) {
	root, err := filepath.Abs("../..")
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
