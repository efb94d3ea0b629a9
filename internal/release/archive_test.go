package release_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"cgichat/internal/release"
)

// file is one file of a test tree.
type file struct {
	path string
	mode fs.FileMode
	data string
}

// tree is a small release tree: a page, programs, a dotfile, a nested
// directory; listed out of order.
var tree = []file{
	{"chat/cgi-bin/stream", 0o755, "\x7fELF stream"},
	{"INSTALL.txt", 0o644, "upload chat/\n"},
	{"chat/index.html", 0o644, "<!doctype html>"},
	{"chat/cgi-bin/post", 0o755, "\x7fELF post"},
	{"chat/.htaccess", 0o644, "Require all denied\n"},
	{"cgichat-data/.htaccess", 0o644, "Require all denied\n"},
	{"chat/cgi-bin/cgichat.conf", 0o644, "# CHAT_DB=\n"},
}

// wantEntries is what every archive of tree holds under "cgichat-test/",
// in order.
var wantEntries = []struct {
	path string
	mode fs.FileMode
}{
	{"cgichat-test/", fs.ModeDir | 0o755},
	{"cgichat-test/INSTALL.txt", 0o644},
	{"cgichat-test/cgichat-data/", fs.ModeDir | 0o755},
	{"cgichat-test/cgichat-data/.htaccess", 0o644},
	{"cgichat-test/chat/", fs.ModeDir | 0o755},
	{"cgichat-test/chat/.htaccess", 0o644},
	{"cgichat-test/chat/cgi-bin/", fs.ModeDir | 0o755},
	{"cgichat-test/chat/cgi-bin/cgichat.conf", 0o644},
	{"cgichat-test/chat/cgi-bin/post", 0o755},
	{"cgichat-test/chat/cgi-bin/stream", 0o755},
	{"cgichat-test/chat/index.html", 0o644},
}

var mtime = time.Date(2025, 11, 30, 10, 20, 30, 0, time.UTC)

// makeTree writes files under a new directory, with umask-like changes to
// their modes (perm applied to each), and file times of modified.
func makeTree(t *testing.T, files []file, perm func(fs.FileMode) fs.FileMode, modified time.Time) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range files {
		p := filepath.Join(root, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, perm(f.mode)); err != nil {
			t.Fatal(err)
		}
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if err := os.Chmod(p, perm(0o755)); err != nil {
				return err
			}
		}
		return os.Chtimes(p, modified, modified)
	})
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func same(m fs.FileMode) fs.FileMode { return m }

// archives returns the tar.gz and the zip of the tree at root.
func archives(t *testing.T, root string, at time.Time) (tgz, zipped []byte) {
	t.Helper()
	out := t.TempDir()
	paths, err := release.Write(out, "cgichat-test", root, at)
	if err != nil {
		t.Fatal(err)
	}
	if g, e := paths, []string{filepath.Join(out, "cgichat-test.tar.gz"), filepath.Join(out, "cgichat-test.zip")}; !slices.Equal(g, e) {
		t.Fatalf("Write wrote %v, want %v", g, e)
	}
	tgz, err = os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	zipped, err = os.ReadFile(paths[1])
	if err != nil {
		t.Fatal(err)
	}
	return tgz, zipped
}

// TestReproducible checks that the archives depend on the tree's paths,
// contents, executability and the given time alone: not on the files'
// own times, on the umask they were made with, nor on the order they were
// made in.
func TestReproducible(t *testing.T) {
	wantTgz, wantZip := archives(t, makeTree(t, tree, same, time.Now()), mtime)
	reversed := slices.Clone(tree)
	slices.Reverse(reversed)
	tests := []struct {
		name     string
		files    []file
		perm     func(fs.FileMode) fs.FileMode
		modified time.Time
	}{
		{"OtherFileTimes", tree, same, time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)},
		{"Umask077", tree, func(m fs.FileMode) fs.FileMode { return m & 0o700 }, time.Now()},
		{"Umask002", tree, func(m fs.FileMode) fs.FileMode { return m | (m&0o444)>>1 }, time.Now()},
		{"OtherOrder", reversed, same, time.Now()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tgz, zipped := archives(t, makeTree(t, tt.files, tt.perm, tt.modified), mtime)
			if !bytes.Equal(tgz, wantTgz) {
				t.Errorf("the tar.gz differs")
			}
			if !bytes.Equal(zipped, wantZip) {
				t.Errorf("the zip differs")
			}
		})
	}
	t.Run("OtherTime", func(t *testing.T) {
		tgz, zipped := archives(t, makeTree(t, tree, same, time.Now()), mtime.Add(time.Second))
		if bytes.Equal(tgz, wantTgz) || bytes.Equal(zipped, wantZip) {
			t.Errorf("archives made at another time are the same: the time is not in them")
		}
	})
}

// TestTarGz reads the tar.gz back: every entry in path order, under the
// prefix, with its mode, owned by 0:0 without names, at the given time,
// with its content; and a gzip header without a name or a time.
func TestTarGz(t *testing.T) {
	tgz, _ := archives(t, makeTree(t, tree, same, time.Now()), mtime)
	gz, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	if gz.Name != "" || !gz.ModTime.IsZero() {
		t.Errorf("gzip header: name %q, time %v; want neither", gz.Name, gz.ModTime)
	}
	tr := tar.NewReader(gz)
	for i := 0; ; i++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			if i != len(wantEntries) {
				t.Errorf("got %d entries, want %d", i, len(wantEntries))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(wantEntries) {
			t.Fatalf("an extra entry %s", hdr.Name)
		}
		want := wantEntries[i]
		if g, e := hdr.Name, want.path; g != e {
			t.Errorf("entry %d: got %s, want %s", i, g, e)
		}
		if g, e := hdr.FileInfo().Mode(), want.mode; g != e {
			t.Errorf("%s: got mode %v, want %v", hdr.Name, g, e)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" {
			t.Errorf("%s: owner %d:%d (%q:%q), want 0:0 without names", hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname)
		}
		if !hdr.ModTime.Equal(mtime) {
			t.Errorf("%s: modified %v, want %v", hdr.Name, hdr.ModTime, mtime)
		}
		if g, e := hdr.Format, tar.FormatUSTAR; g != e {
			t.Errorf("%s: format %v, want %v", hdr.Name, g, e)
		}
		checkContent(t, hdr.Name, tr)
	}
}

// TestZip reads the zip back: every entry in path order, under the
// prefix, with its Unix mode and the given time.
func TestZip(t *testing.T) {
	_, zipped := archives(t, makeTree(t, tree, same, time.Now()), mtime)
	zr, err := zip.NewReader(bytes.NewReader(zipped), int64(len(zipped)))
	if err != nil {
		t.Fatal(err)
	}
	if g, e := len(zr.File), len(wantEntries); g != e {
		t.Fatalf("got %d entries, want %d", g, e)
	}
	for i, f := range zr.File {
		want := wantEntries[i]
		if g, e := f.Name, want.path; g != e {
			t.Errorf("entry %d: got %s, want %s", i, g, e)
		}
		if g, e := f.Mode(), want.mode; g != e {
			t.Errorf("%s: got mode %v, want %v", f.Name, g, e)
		}
		if !f.Modified.Equal(mtime) {
			t.Errorf("%s: modified %v, want %v", f.Name, f.Modified, mtime)
		}
		if f.Mode().IsDir() {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		checkContent(t, f.Name, rc)
		rc.Close()
	}
}

// checkContent fails unless r holds the content tree gives name, for a
// file.
func checkContent(t *testing.T, name string, r io.Reader) {
	t.Helper()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, f := range tree {
		if "cgichat-test/"+f.path == name {
			if string(got) != f.data {
				t.Errorf("%s: got %q, want %q", name, got, f.data)
			}
			return
		}
	}
	if len(got) != 0 {
		t.Errorf("%s: got %d bytes, want a directory", name, len(got))
	}
}

// TestWalkRefusesLinks checks that a symbolic link in the tree is an
// error rather than a file whose content depends on where it points.
func TestWalkRefusesLinks(t *testing.T) {
	root := makeTree(t, tree, same, time.Now())
	if err := os.Symlink("index.html", filepath.Join(root, "chat", "home.html")); err != nil {
		t.Fatal(err)
	}
	if _, err := release.Walk(root); err == nil {
		t.Errorf("Walk of a tree with a symbolic link: no error")
	}
}
