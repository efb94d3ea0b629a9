package web

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestWriteFailed checks why a stream says it stopped when a write fails:
// the request's end when the write failed because of it, whatever ended
// it, and "client gone" for a write that failed on its own.
func TestWriteFailed(t *testing.T) {
	closed := errors.New("fastcgi: the web server closed the connection")
	cancelledBy := func(cause error) context.Context {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(cause)
		return ctx
	}
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want string
	}{
		{"ConnectionClosedFirst", cancelledBy(closed), closed, closed.Error()},
		{"Shutdown", cancelledBy(nil), context.Canceled, "shutdown"},
		{"BrokenPipe", context.Background(), syscall.EPIPE, "client gone"},
		{"BrokenPipeAfterTheEnd", cancelledBy(closed), syscall.EPIPE, "client gone"},
	}
	for _, tt := range tests {
		if got := writeFailed(tt.ctx, tt.err); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// deadlineRecorder is a response that records the write deadlines set on
// it (http.ResponseController finds SetWriteDeadline).
type deadlineRecorder struct {
	*httptest.ResponseRecorder
	set []time.Time
}

func (d *deadlineRecorder) SetWriteDeadline(t time.Time) error {
	d.set = append(d.set, t)
	return nil
}

// TestWriteDeadlineExtend checks when a stream sets its write deadline
// again: at its first write, and then only once the deadline it set is
// less than writeTimeout - deadlineSlack away, always writeTimeout after
// the write; every write has between those two to finish.
func TestWriteDeadlineExtend(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	tests := []struct {
		name   string
		writes []time.Duration // each write's time after t0
		want   []time.Time     // the deadlines set
	}{
		{"First", []time.Duration{0}, []time.Time{at(writeTimeout)}},
		{"BurstSetsOnce", []time.Duration{0, time.Millisecond, time.Second, 4 * time.Second}, []time.Time{at(writeTimeout)}},
		{"AtTheSlack", []time.Duration{0, deadlineSlack}, []time.Time{at(writeTimeout)}},
		{"PastTheSlack", []time.Duration{0, deadlineSlack + time.Nanosecond},
			[]time.Time{at(writeTimeout), at(deadlineSlack + time.Nanosecond + writeTimeout)}},
		{"Heartbeats", []time.Duration{0, 30 * time.Second, 60 * time.Second},
			[]time.Time{at(writeTimeout), at(30*time.Second + writeTimeout), at(60*time.Second + writeTimeout)}},
	}
	for _, tt := range tests {
		w := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
		rc := http.NewResponseController(w)
		var dl writeDeadline
		for _, d := range tt.writes {
			now := at(d)
			dl.extend(rc, now)
			if left := dl.at.Sub(now); left < writeTimeout-deadlineSlack || left > writeTimeout {
				t.Errorf("%s: a write at %v has %v to finish, want %v to %v", tt.name, d, left, writeTimeout-deadlineSlack, writeTimeout)
			}
		}
		if !slices.Equal(w.set, tt.want) {
			t.Errorf("%s: deadlines set %v, want %v", tt.name, w.set, tt.want)
		}
	}
}
