package web

import (
	"context"
	"errors"
	"syscall"
	"testing"
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
