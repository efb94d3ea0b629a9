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
		want    time.Duration // before the spread
	}{
		{"Few pollers", 3, 20 * time.Millisecond, 2, time.Second},
		{"No cost known yet", 100, 0, 2, 150 * firstPollCost},
		{"Two hundred at 30 ms, reserve 2", 200, 30 * time.Millisecond, 2, 9 * time.Second},
		{"No reserve counts as one", 50, 40 * time.Millisecond, 0, 6 * time.Second},
		{"Slow polls wait longer", 1000, 200 * time.Millisecond, 2, 30 * time.Second},
	}
	for _, tt := range tests {
		for range 20 {
			got := pollRetry(tt.pollers, tt.cost, tt.reserve)
			lo, hi := max(tt.want*8/10, pollMin), min(tt.want*12/10, pollMax)
			if got < lo || got > hi {
				t.Errorf("%s: pollRetry = %v, want %v within a fifth", tt.name, got, tt.want)
				break
			}
		}
	}
}
