package hosting

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// TestOneAtATimeLimitsMemory checks that a process serving one request at
// a time runs Go on one processor under a soft memory limit, unless
// GOMEMLIMIT sets one itself.
func TestOneAtATimeLimitsMemory(t *testing.T) {
	procs, limit := runtime.GOMAXPROCS(0), debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		runtime.GOMAXPROCS(procs)
		debug.SetMemoryLimit(limit)
	})
	tests := []struct {
		name, gomemlimit string
		want             int64
	}{
		{"Default", "", oneRequestMemory},
		{"GOMEMLIMIT decides", "64MiB", limit},
	}
	for _, tt := range tests {
		t.Setenv("GOMEMLIMIT", tt.gomemlimit)
		debug.SetMemoryLimit(limit)
		oneAtATime()
		if got := debug.SetMemoryLimit(-1); got != tt.want {
			t.Errorf("%s: memory limit %d, want %d", tt.name, got, tt.want)
		}
		if got := runtime.GOMAXPROCS(0); got != 1 {
			t.Errorf("%s: GOMAXPROCS %d, want 1", tt.name, got)
		}
	}
}
