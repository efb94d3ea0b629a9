package main

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// runner is hostkit.T for a command: Fatalf panics with a failure that
// run recovers, Cleanup stacks functions that cleanup runs last first, and
// TempDir makes directories that cleanup removes.
type runner struct {
	log io.Writer

	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

// failure is what Fatalf panics with.
type failure struct{ msg string }

func (r *runner) Helper() {}

func (r *runner) Logf(format string, args ...any) {
	fmt.Fprintf(r.log, format+"\n", args...)
}

func (r *runner) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
	panic(failure{fmt.Sprintf(format, args...)})
}

func (r *runner) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func (r *runner) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

func (r *runner) TempDir() string {
	dir, err := os.MkdirTemp("", "cgichat-bench-")
	if err != nil {
		r.Fatalf("temp dir: %v", err)
	}
	r.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// do runs f and returns the message of a Fatalf inside it as an error;
// other panics go on.
func (r *runner) do(f func()) (err error) {
	defer func() {
		if v := recover(); v != nil {
			f, ok := v.(failure)
			if !ok {
				panic(v)
			}
			err = fmt.Errorf("%s", f.msg)
		}
	}()
	f()
	return nil
}

// cleanup runs every cleanup registered so far, last first, each once; it
// may run from the signal handler while do is still busy.
func (r *runner) cleanup() {
	for {
		r.mu.Lock()
		n := len(r.cleanups)
		if n == 0 {
			r.mu.Unlock()
			return
		}
		f := r.cleanups[n-1]
		r.cleanups = r.cleanups[:n-1]
		r.mu.Unlock()
		f()
	}
}
