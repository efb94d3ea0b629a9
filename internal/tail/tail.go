// Package tail keeps, for the rooms that pollers read, a static file of
// each room's latest events in a folder the web server serves itself.
//
// A poller is a reader whom the host's stream budget (CHAT_MAX_STREAMS)
// answers with polls. Each poll is a run of the stream program, one of the
// few dynamic requests a shared host lets an account run at once; a static
// file costs none of them, and the web server answers an unchanged one
// with 304 from its ETag. So a poller reads the room's tail file every few
// seconds and calls the program only at its retry: (for presence and a
// live stream when one is free) or when the file does not reach back to
// the last event it has.
//
// A tail file is text/event-stream (WHATWG HTML, "Server-sent events"):
// first an event of type "tail", without an id, whose data is
// {"room":R,"after":A,"last":L}; then every row of the room with an id
// above A, up to L, messages and deletions, in id order, each as the
// stream sends it. It holds the room's last Rows rows, or fewer when they
// would pass MaxBytes. It is replaced whole (written beside it, then
// renamed over it), outside any lock of the database, so that a slow disk
// never holds up a post; whoever renames a file then reads the room's last
// id again and writes once more when it moved, so that an older file that
// landed over a newer one does not stay. Sweep removes what should no
// longer be read: the files of rooms pruned empty, of another secret, and
// rows pruned.
//
// Tail files exist only where a folder named DirName is beside the
// programs' cgi-bin and the programs may write in it (deploy.sh makes it;
// see Open), and only for SQLite: several web hosts sharing a database server would
// each need their own.
package tail

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/feed"
	"cgichat/internal/store"
)

// DirName is the tail folder's name, beside cgi-bin in the chat's folder.
const DirName = "tail"

// The bounds of one file: the room's last Rows rows, fewer when they
// would take more than MaxBytes, which holds a burst of the longest
// messages that the default rate limit lets one poster send at once
// (five of 2,000 four-byte characters). A poller that falls further
// behind between two reads calls the program.
const (
	Rows     = 50
	MaxBytes = 64 << 10
)

// Every is how often a poller reads the tail file; pollers spread each
// wait by a fifth either way.
const Every = 2 * time.Second

// EventTail is the type of a tail file's first event.
const EventTail = "tail"

// Head is the data of a tail file's first event.
type Head struct {
	Room string `json:"room"`
	// After: the file holds every row of Room with an id above After.
	After int64 `json:"after"`
	// Last is the highest id in the file (0 for an empty room).
	Last int64 `json:"last"`
	// Count is how many rows the file holds.
	Count int `json:"count"`
}

// headBytes bounds what is read of a file to find its Head: the event's
// two lines with the longest room name.
const headBytes = 512

// Dir is a tail folder and the database whose rooms it shows.
type Dir struct {
	path  string
	store *store.Store
	key   []byte
}

// Open returns the tail folder at path for st, whose file names are keyed
// with key (see Name), or nil when there is none:
// path is not a folder the process may write in. A missing folder is made
// when the folder above belongs to the process's user, as the chat's
// folder does on a suEXEC host (where a release archive is uploaded by
// FTP, and deploy.sh did not run).
func Open(path string, st *store.Store, key []byte) *Dir {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) && ownDir(filepath.Dir(path)) {
		// Readable by the web server's user whatever the umask; a folder
		// made meanwhile does as well.
		if os.Mkdir(path, 0o755) == nil {
			os.Chmod(path, 0o755)
		}
		fi, err = os.Stat(path)
	}
	if err != nil || !fi.IsDir() {
		return nil
	}
	d := &Dir{path: path, store: st, key: key}
	if err := d.keyed(); err != nil {
		return nil
	}
	return d
}

// keyFile names, in the folder, the file that says under which secret
// its files are named: a hash of it, not the secret.
const keyFile = ".key"

// keyed checks that the folder's files are named under the Dir's key.
// When they are not (a new secret: deleting claim_secret is the recovery
// from a leaked database), it removes them — nothing would write them
// again, and they would go on showing what is deleted after — and notes
// the new key. It fails when the process may not write in the folder.
func (d *Dir) keyed() error {
	mac := hmac.New(sha256.New, d.key)
	mac.Write([]byte("cgichat tail key"))
	id := hex.EncodeToString(mac.Sum(nil)[:8]) + "\n"
	path := filepath.Join(d.path, keyFile)
	if b, err := os.ReadFile(path); err == nil && string(b) == id {
		return syscall.Access(d.path, 2|1) // W_OK|X_OK
	}
	names, _ := filepath.Glob(filepath.Join(d.path, "*.txt"))
	for _, n := range names {
		if fileName.MatchString(filepath.Base(n)) {
			os.Remove(n)
		}
	}
	f, err := os.CreateTemp(d.path, ".key-*")
	if err != nil {
		return err
	}
	_, err = f.WriteString(id)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// Name returns the file name of room's tail: 32 hexadecimal digits of an
// HMAC-SHA256 of the room under the Dir's key (the database's secret). It
// is learnt from a poll, which checks the request's Host: a page of
// another site that rebinds its name to the chat's address (DNS
// rebinding) cannot compute it, nor does the folder list the rooms.
func (d *Dir) Name(room string) string {
	mac := hmac.New(sha256.New, d.key)
	mac.Write([]byte("cgichat tail\x00" + room))
	return hex.EncodeToString(mac.Sum(nil)[:16]) + ".txt"
}

// URL returns the address of room's tail relative to the stream program's
// (cgi-bin/stream), as a Location header is.
func (d *Dir) URL(room string) string { return "../" + DirName + "/" + d.Name(room) }

// Refresh rewrites room's tail file after a change to the room, if the
// room has one (a poller asked for it).
func (d *Dir) Refresh(ctx context.Context, room string) error {
	if _, err := os.Stat(d.file(room)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	_, err := d.write(ctx, room)
	return err
}

// Ensure makes room's tail file current — writing it when it is missing
// or behind the room (a deletion from the sqlite3 shell, a post whose
// process ended before it wrote, a prune) — and returns its URL (see
// URL). A room without rows gets none, and "": polls of made-up rooms
// leave no files.
func (d *Dir) Ensure(ctx context.Context, room string) (string, error) {
	if !d.current(ctx, room) {
		if held, err := d.write(ctx, room); !held || err != nil {
			return "", err
		}
	}
	return d.URL(room), nil
}

// current reports whether room's file holds the rows the room has above
// its after: none added (a post, a deletion's tombstone), none pruned.
func (d *Dir) current(ctx context.Context, room string) bool {
	h, err := ReadHead(d.file(room))
	if err != nil || h.Room != room {
		return false
	}
	n, last, err := d.store.Span(ctx, room, h.After)
	return err == nil && n == h.Count && last == h.Last
}

func (d *Dir) file(room string) string { return filepath.Join(d.path, d.Name(room)) }

// writeTries bounds how often write writes a file whose room moved on
// meanwhile; the next poll brings a file still behind up to date.
const writeTries = 3

// write replaces room's tail file with the room's last rows, and removes
// it when the room has none (held reports whether it has). When it cannot
// write, it removes the file, so that
// nothing stale (a message deleted since) is served: its readers poll.
func (d *Dir) write(ctx context.Context, room string) (held bool, err error) {
	for range writeTries {
		ms, err := d.store.Tail(ctx, room, Rows+1)
		if err != nil {
			return false, err
		}
		if len(ms) == 0 {
			return false, d.remove(room)
		}
		if err := d.replace(room, Encode(room, ms)); err != nil {
			d.remove(room)
			return false, err
		}
		// Another writer's newer file may have landed first, and this one
		// over it: rows posted or pruned since it read them.
		if d.current(ctx, room) {
			break
		}
	}
	return true, nil
}

// remove removes room's file, if it has one.
func (d *Dir) remove(room string) error {
	if err := os.Remove(d.file(room)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("tail: %w", err)
	}
	return nil
}

// Sweep goes through the folder after retention pruned the database (or
// the database's secret changed): it removes the files of rooms without
// rows and the files whose names are not their room's under the current
// secret, and rewrites the others, which may hold pruned rows. It returns
// the first error, after trying every file.
func (d *Dir) Sweep(ctx context.Context) error {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	var first error
	for _, e := range entries {
		name := e.Name()
		if !fileName.MatchString(name) {
			continue
		}
		path := filepath.Join(d.path, name)
		h, err := ReadHead(path)
		if err == nil && d.Name(h.Room) == name {
			_, err = d.write(ctx, h.Room)
		} else if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = rerr
		} else {
			err = nil
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}

// fileName matches the names of tail files.
var fileName = regexp.MustCompile(`^[0-9a-f]{32}\.txt$`)

// Encode returns the tail file of room whose last rows (up to Rows+1)
// are ms, oldest first: as many of the newest as fit in Rows and
// MaxBytes, at least one. Its after is the id of the newest row left out
// (ids are shared by every room: the one below the first row kept may
// belong to another), 0 when the file holds every row of the room.
func Encode(room string, ms []chat.Message) []byte {
	frames := make([][]byte, len(ms))
	first, size := len(ms), 0
	for i := len(ms) - 1; i >= max(len(ms)-Rows, 0); i-- {
		frames[i] = feed.Encode(ms[i]).Bytes
		if size += len(frames[i]); size > MaxBytes && i < len(ms)-1 {
			break
		}
		first = i
	}
	h := Head{Room: room, Count: len(ms) - first}
	if first > 0 {
		h.After = ms[first-1].ID
	}
	if len(ms) > 0 {
		h.Last = ms[len(ms)-1].ID
	}
	head, _ := json.Marshal(h) // strings and integers: cannot fail
	b := fmt.Appendf(nil, "event: %s\ndata: %s\n\n", EventTail, head)
	for _, f := range frames[first:] {
		b = append(b, f...)
	}
	return b
}

// replace writes b as room's file: beside it under a dot name (which the
// web server does not serve), then renamed over it, so that a reader gets
// the old file or the new one whole.
func (d *Dir) replace(room string, b []byte) error {
	// Web servers make a file's ETag of its size and modification time,
	// which nginx and lighttpd count in whole seconds: a new version of
	// the size of an earlier one within the same second would be answered
	// 304 with the old one. So within a second each version is longer
	// than the one it replaces, by blank lines, which are nothing in an
	// event stream.
	if fi, err := os.Stat(d.file(room)); err == nil && fi.Size() >= int64(len(b)) &&
		fi.ModTime().Truncate(time.Second).Equal(time.Now().Truncate(time.Second)) {
		b = append(b, bytes.Repeat([]byte("\n"), int(fi.Size())+1-len(b))...)
	}
	f, err := os.CreateTemp(d.path, ".tail-*")
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		// The web server's user reads it: under suEXEC the programs run as
		// the account, the server as another user.
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), d.file(room))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("tail: write %s: %w", d.file(room), err)
	}
	return nil
}

// ReadHead reads the Head of the tail file at path.
func ReadHead(path string) (Head, error) {
	f, err := os.Open(path)
	if err != nil {
		return Head{}, err
	}
	defer f.Close()
	b := make([]byte, headBytes)
	n, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return Head{}, err
	}
	return ParseHead(b[:n])
}

// ParseHead reads the Head from the start of a tail file.
func ParseHead(b []byte) (Head, error) {
	var h Head
	prefix := []byte("event: " + EventTail + "\ndata: ")
	rest, ok := bytes.CutPrefix(b, prefix)
	line, _, found := bytes.Cut(rest, []byte("\n"))
	if !ok || !found || json.Unmarshal(line, &h) != nil {
		return Head{}, errors.New("tail: the file does not start with its tail event")
	}
	return h, nil
}
