package feed

import (
	"testing"
	"time"
)

// TestPollRetry checks the poll interval: the pollers' requests, at what
// their polls took, fill a third of the budget's reserve for polls on
// average;
// within a second and thirty, spread by a fifth either way.
func TestPollRetry(t *testing.T) {
	tests := []struct {
		name    string
		pollers int
		cost    time.Duration
		reserve int
		busy    int           // other polls running now
		want    time.Duration // before the spread
	}{
		{"Few pollers", 3, 20 * time.Millisecond, 2, 0, time.Second},
		{"No cost known yet", 100, 0, 2, 0, 150 * firstPollCost},
		{"Two hundred at 30 ms, reserve 2", 200, 30 * time.Millisecond, 2, 0, 9 * time.Second},
		{"No reserve counts as one", 50, 40 * time.Millisecond, 0, 0, 6 * time.Second},
		{"Slow polls wait longer", 1000, 200 * time.Millisecond, 2, 0, 30 * time.Second},
		// A third of a reserve of 6 is 2 polls at once: 2 running is as
		// meant, 4 is twice as many, so the interval doubles.
		{"As many running as meant", 100, 20 * time.Millisecond, 6, 2, time.Second},
		{"Twice as many running", 100, 20 * time.Millisecond, 6, 4, 2 * time.Second},
		{"A crowded machine", 200, 30 * time.Millisecond, 2, 12, 30 * time.Second},
	}
	for _, tt := range tests {
		for range 20 {
			got := pollRetry(tt.pollers, tt.cost, tt.reserve, tt.busy)
			lo, hi := max(tt.want*8/10, pollMin), min(tt.want*12/10, pollMax)
			if got < lo || got > hi {
				t.Errorf("%s: pollRetry = %v, want %v within a fifth", tt.name, got, tt.want)
				break
			}
		}
	}
}
