package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// FileName is the settings file the programs read beside themselves:
// cgi-bin/cgichat.conf. It sits beside the programs rather than in the
// data directory because the programs find it there with no setting at
// all, while the data directory is itself a setting (CHAT_DB) that may not
// reach them: suEXEC drops SetEnv.
const FileName = "cgichat.conf"

// maxFileSize bounds what is read of a settings file: a few dozen lines
// are expected.
const maxFileSize = 64 << 10

// File is a settings file as read: NAME=value lines.
type File struct {
	Path    string
	entries map[string]fileEntry
	order   []string // names in the order of their lines
}

type fileEntry struct {
	value string
	line  int
}

// Lookup returns the value the file gives name and its line; ok is false
// when the file does not set name. A nil File sets nothing.
func (f *File) Lookup(name string) (value string, line int, ok bool) {
	if f == nil {
		return "", 0, false
	}
	e, ok := f.entries[name]
	return e.value, e.line, ok
}

// Names returns the names the file sets, in the order of their lines.
func (f *File) Names() []string {
	if f == nil {
		return nil
	}
	return slices.Clone(f.order)
}

// FileError is a line of a settings file that cannot be used, or a value
// on it that is invalid. Its message names the file (by its base name:
// it also reaches clients in a 500's JSON) and the line.
type FileError struct {
	Path string
	Line int // 0 when the file as a whole is at fault
	Err  error
	// passing: reading failed for a reason of the moment (out of file
	// descriptors, an I/O error), not for what the file is; a Watched
	// reads it again at the next request.
	passing bool
}

func (e *FileError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %v", filepath.Base(e.Path), e.Err)
	}
	return fmt.Sprintf("%s, line %d: %v", filepath.Base(e.Path), e.Line, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// settingName is what a line may set: a CHAT_ name in capitals.
var settingName = regexp.MustCompile(`^CHAT_[A-Z0-9_]+$`)

// ParseFile reads the settings in data, the contents of the file at path.
// The format is for a person with a text editor: one NAME=value per line,
// spaces around either allowed; the value may be wrapped in matching
// single or double quotes, which are removed; a line whose first
// non-blank character is # is a comment, as is a blank line. A # after a
// value is part of it. Windows line ends and a byte order mark are
// accepted. Every other line is an error naming its number: text without
// "=", a name that is not one of the settings, a name given twice.
func ParseFile(path string, data []byte) (*File, error) {
	f := &File{Path: path, entries: make(map[string]fileEntry)}
	// Notepad's "Unicode" is UTF-16, whose every other byte is 0.
	if bytes.HasPrefix(data, []byte{0xFF, 0xFE}) || bytes.HasPrefix(data, []byte{0xFE, 0xFF}) {
		return nil, &FileError{Path: path, Err: errors.New("it is saved as UTF-16 (\"Unicode\"): save it as UTF-8 or plain text")}
	}
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	for i, raw := range strings.Split(string(data), "\n") {
		n := i + 1
		line := strings.TrimSpace(strings.TrimSuffix(raw, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		bad := func(format string, args ...any) error {
			return &FileError{Path: path, Line: n, Err: fmt.Errorf(format, args...)}
		}
		// An error quotes no more of the line than a name: it reaches
		// clients in a 500, and the rest may hold a password.
		name, value, ok := strings.Cut(line, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		switch {
		case !ok:
			// A word alone may be a password; one that starts as a
			// setting's name is none.
			word := strings.TrimRight(strings.Fields(line)[0], ":")
			if !strings.HasPrefix(strings.ToUpper(word), "CHAT_") {
				word = ""
			}
			return nil, bad("%shas no \"=\": write NAME=value, such as CHAT_HISTORY=50", quoteWord(word, "the line"))
		case strings.HasPrefix(name, "export "):
			return nil, bad("the line starts with \"export\": write the setting without it, as NAME=value")
		case !settingName.MatchString(name):
			return nil, bad("%sis not a setting's name: they are CHAT_ and capitals, such as CHAT_HISTORY", quoteWord(name, `the text before "="`))
		case !slices.Contains(Names, name):
			return nil, bad("%s is not one of cgichat's settings (post -h lists them)", name)
		}
		if prev, dup := f.entries[name]; dup {
			return nil, bad("%s is set twice, on lines %d and %d: keep one", name, prev.line, n)
		}
		if q := value[:min(len(value), 1)]; q == `"` || q == "'" {
			if len(value) < 2 || !strings.HasSuffix(value, q) {
				return nil, bad("the value of %s opens a quote (%s) and does not close it", name, q)
			}
			value = value[1 : len(value)-1]
		}
		f.entries[name] = fileEntry{value: value, line: n}
		f.order = append(f.order, name)
	}
	return f, nil
}

// wordLike is text an error may quote from a settings file's line: what
// could be a name, never a value.
var wordLike = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)

// quoteWord returns s quoted when it looks like a name, else what (an
// error then says what is wrong without repeating the text), followed by
// a space.
func quoteWord(s, what string) string {
	if wordLike.MatchString(s) {
		return fmt.Sprintf("%q ", s)
	}
	return what + " "
}

// ReadFile reads and parses the settings file at path. A missing file sets
// nothing: it gives an empty File and no error.
func ReadFile(path string) (*File, error) {
	b, err := readLimited(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &File{Path: path}, nil
	}
	if errors.Is(err, fs.ErrPermission) {
		return nil, &FileError{Path: path, Err: errors.New("the user the program runs as may not read it (permission denied)")}
	}
	if err != nil {
		// The path would tell a client in the 500 where the site lives.
		var pe *fs.PathError
		passing := errors.As(err, &pe)
		if passing {
			err = pe.Err
		}
		return nil, &FileError{Path: path, Err: err, passing: passing}
	}
	return ParseFile(path, b)
}

// errWritable refuses a settings file that any user of the host may
// change: whoever could would choose the database, the trusted proxies,
// the limits.
var errWritable = errors.New("every user of this host may change it: take that away with chmod o-w (deploy.sh writes it 0644 or 0600)")

// readLimited reads at most maxFileSize bytes of path, and fails on more
// or when the file is writable by others.
func readLimited(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	// The file as opened, a symbolic link's target.
	if fi, err := fh.Stat(); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o002 != 0 {
		return nil, errWritable
	}
	b, err := io.ReadAll(io.LimitReader(fh, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("longer than %d KiB: is it the right file?", maxFileSize>>10)
	}
	return b, nil
}

// Watched is a settings file that a long-lived process (mod_fcgid, a
// daemon) reads again whenever it changes, so that an edit over FTP takes
// effect with the next request. It costs one stat per request.
type Watched struct {
	path string

	mu   sync.Mutex
	seen fileStamp
	file *File
	err  error
}

// fileStamp tells versions of a file apart: a file replaced by rename gets
// a new inode, one edited in place a new size or time.
type fileStamp struct {
	exists      bool
	dev, ino    uint64
	size        int64
	mtime       time.Time
	ctime       syscall.Timespec
	initialized bool
}

// Watch returns the settings file at path, read on first use. An empty
// path is no file.
func Watch(path string) *Watched { return &Watched{path: path} }

// Path returns the file's path.
func (w *Watched) Path() string { return w.path }

// Current returns the file as it is now, parsed again if it changed since
// the last call; the error is the file's (a FileError), as ReadFile's.
func (w *Watched) Current() (*File, error) {
	if w.path == "" {
		return nil, nil
	}
	stamp := stampOf(w.path)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen.initialized && stamp == w.seen {
		return w.file, w.err
	}
	w.file, w.err = ReadFile(w.path)
	w.seen = stamp
	if fe := (*FileError)(nil); errors.As(w.err, &fe) && fe.passing {
		w.seen = fileStamp{} // not kept: the next call reads again
	}
	return w.file, w.err
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{initialized: true}
	}
	s := fileStamp{exists: true, size: fi.Size(), mtime: fi.ModTime(), initialized: true}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino, s.ctime = uint64(st.Dev), st.Ino, st.Ctim
	}
	return s
}
