// Package release writes cgichat's release archives: a directory tree as a
// .tar.gz and as a .zip whose bytes depend only on the tree's paths, file
// contents, whether each file is executable, and one timestamp, so that
// building twice from one commit gives identical archives on any machine
// with the same Go.
//
// Both formats come from Go's standard library rather than from tar, gzip
// and zip: GNU tar's --sort=name and --owner=0 are not in macOS's bsdtar,
// GNU gzip and macOS's gzip compress to different bytes, and zip writes
// the local time zone into every entry. Go's compressors give the same
// bytes wherever the same Go runs, and deploy.sh needs Go to build anyway.
package release

import (
	"archive/tar"
	"archive/zip"
	"compress/flate"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"
)

// Entry is one directory or regular file of a tree.
type Entry struct {
	Path string      // slash-separated, relative to the tree's root; a directory's ends in "/"
	Mode fs.FileMode // 0755 for directories and executables, 0644 for other files
	Src  string      // the file on disk; "" for a directory
}

// Walk lists the directories and regular files under root, sorted by path,
// with their modes reduced to 0755 (directories, and files someone may
// execute) and 0644, so that the umask of the machine that staged the tree
// does not show. Anything else (a symbolic link, a device) is an error.
func Walk(root string) ([]Entry, error) {
	var entries []Entry
	// WalkDir visits each directory's entries in lexical order, which is
	// the order of the paths.
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			entries = append(entries, Entry{Path: rel + "/", Mode: fs.ModeDir | 0o755})
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			mode := fs.FileMode(0o644)
			if fi.Mode().Perm()&0o111 != 0 {
				mode = 0o755
			}
			entries = append(entries, Entry{Path: rel, Mode: mode, Src: p})
		default:
			return fmt.Errorf("release: %s is neither a directory nor a regular file", p)
		}
		return nil
	})
	return entries, err
}

// WriteTarGz writes entries as a gzip-compressed tar archive, each under
// prefix (a directory name, which the archive holds first), owned by user
// and group 0 with no names, modified at mtime.
func WriteTarGz(w io.Writer, entries []Entry, prefix string, mtime time.Time) error {
	// No name and no time in the gzip header: only the tar's bytes count.
	gz, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	for _, e := range withPrefix(entries, prefix) {
		hdr := &tar.Header{
			Name:    e.Path,
			Mode:    int64(e.Mode.Perm()),
			ModTime: mtime.UTC().Truncate(time.Second),
			// The USTAR format holds all of the above and nothing more
			// (no access times, no user names), which every tar reads.
			Format: tar.FormatUSTAR,
		}
		if e.Src == "" {
			hdr.Typeflag = tar.TypeDir
			if err := tw.WriteHeader(hdr); err != nil {
				return fmt.Errorf("release: %s: %w", e.Path, err)
			}
			continue
		}
		hdr.Typeflag = tar.TypeReg
		if err := copyFile(e.Src, func(size int64) (io.Writer, error) {
			hdr.Size = size
			return tw, tw.WriteHeader(hdr)
		}); err != nil {
			return fmt.Errorf("release: %s: %w", e.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// WriteZip writes entries as a zip archive, each under prefix, with its
// Unix mode and modified at mtime (as UTC, so that the writer's time zone
// does not show).
func WriteZip(w io.Writer, entries []Entry, prefix string, mtime time.Time) error {
	zw := zip.NewWriter(w)
	zw.RegisterCompressor(zip.Deflate, func(out io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(out, flate.BestCompression)
	})
	for _, e := range withPrefix(entries, prefix) {
		hdr := &zip.FileHeader{Name: e.Path, Method: zip.Deflate, Modified: mtime.UTC().Truncate(time.Second)}
		hdr.SetMode(e.Mode)
		if e.Src == "" {
			hdr.Method = zip.Store
			if _, err := zw.CreateHeader(hdr); err != nil {
				return fmt.Errorf("release: %s: %w", e.Path, err)
			}
			continue
		}
		if err := copyFile(e.Src, func(int64) (io.Writer, error) { return zw.CreateHeader(hdr) }); err != nil {
			return fmt.Errorf("release: %s: %w", e.Path, err)
		}
	}
	return zw.Close()
}

// withPrefix returns entries under the directory prefix, which comes
// first.
func withPrefix(entries []Entry, prefix string) []Entry {
	out := []Entry{{Path: prefix + "/", Mode: fs.ModeDir | 0o755}}
	for _, e := range entries {
		e.Path = path.Join(prefix, e.Path)
		if e.Src == "" {
			e.Path += "/"
		}
		out = append(out, e)
	}
	return out
}

// copyFile copies the file at src into the writer that open returns once
// it knows the file's size.
func copyFile(src string, open func(size int64) (io.Writer, error)) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	w, err := open(fi.Size())
	if err != nil {
		return err
	}
	n, err := io.Copy(w, f)
	if err == nil && n != fi.Size() {
		err = fmt.Errorf("changed while being archived: %d bytes, then %d", fi.Size(), n)
	}
	return err
}

// Write archives the tree at root as outDir/name.tar.gz and
// outDir/name.zip, each holding it under the directory name, and returns
// their paths. Each file appears whole or not at all: it is written under
// a temporary name and renamed.
func Write(outDir, name, root string, mtime time.Time) ([]string, error) {
	entries, err := Walk(root)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, f := range []struct {
		ext   string
		write func(io.Writer, []Entry, string, time.Time) error
	}{{".tar.gz", WriteTarGz}, {".zip", WriteZip}} {
		dest := filepath.Join(outDir, name+f.ext)
		if err := writeFile(dest, func(w io.Writer) error { return f.write(w, entries, name, mtime) }); err != nil {
			return paths, err
		}
		paths = append(paths, dest)
	}
	return paths, nil
}

// writeFile writes dest, mode 0644, through write, by way of a temporary
// file in its directory.
func writeFile(dest string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dest)
}
