package sse

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// Event is one dispatched event, or one comment line, as a client parses
// them (the WHATWG EventSource rules).
type Event struct {
	ID      string // the last event ID after this event (it persists)
	Type    string // "message" when the stream named none
	Data    string // data lines joined by "\n"
	Retry   int    // the last retry: value seen, in ms (0 if none)
	Comment string // set, with nothing else, for a comment line
}

// Reader parses an event stream, for tests, benchmarks and fuzzing.
type Reader struct {
	r     *bufio.Reader
	id    string
	retry int
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReader(r)} }

// Next returns the next event or comment. At the end of the stream it
// returns io.EOF; an event not ended by a blank line is dropped, as a
// browser drops it.
func (r *Reader) Next() (Event, error) {
	var data []string
	typ, hasData := "", false
	for {
		line, err := r.line()
		if err != nil {
			return Event{}, err
		}
		if line == "" {
			if !hasData {
				typ = ""
				continue
			}
			if typ == "" {
				typ = "message"
			}
			return Event{ID: r.id, Type: typ, Data: strings.Join(data, "\n"), Retry: r.retry}, nil
		}
		name, value, _ := strings.Cut(line, ":")
		if name == "" {
			return Event{Comment: strings.TrimPrefix(value, " "), ID: r.id, Retry: r.retry}, nil
		}
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "event":
			typ = value
		case "data":
			data, hasData = append(data, value), true
		case "id":
			if !strings.ContainsRune(value, 0) {
				r.id = value
			}
		case "retry":
			if n, err := strconv.Atoi(value); err == nil && n >= 0 {
				r.retry = n
			}
		}
	}
}

// LastID returns the last event id seen, even one that came with no event
// (an id field followed by a blank line), as EventSource keeps it.
func (r *Reader) LastID() string { return r.id }

// line returns one line without its ending, which may be CRLF, LF or CR.
func (r *Reader) line() (string, error) {
	var b strings.Builder
	for {
		c, err := r.r.ReadByte()
		if err != nil {
			if err == io.EOF && b.Len() > 0 {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
		switch c {
		case '\n':
			return b.String(), nil
		case '\r':
			if next, err := r.r.Peek(1); err == nil && next[0] == '\n' {
				r.r.ReadByte()
			}
			return b.String(), nil
		}
		b.WriteByte(c)
	}
}
