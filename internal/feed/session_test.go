package feed

import (
	"testing"
	"time"
)

// TestPollRetry checks the poll interval: the pollers' requests, at what
// their polls took, fill a sixth of the budget's reserve for polls on
// average, longer when the polls running fill the reserve; within a second
// and thirty (sixty for readers of a tail file), spread by a fifth either
// way.
func TestPollRetry(t *testing.T) {
	tests := []struct {
		name    string
		pollers int
		cost    time.Duration
		reserve int
		busy    int           // other polls running now
		want    time.Duration // before the spread
		longest time.Duration // 0: pollMax
	}{
		{"Few pollers", 3, 20 * time.Millisecond, 2, 0, time.Second, 0},
		{"No cost known yet", 100, 0, 2, 0, 300 * firstPollCost, 0},
		{"Two hundred at 15 ms, reserve 2", 200, 15 * time.Millisecond, 2, 0, 9 * time.Second, 0},
		{"No reserve counts as one", 50, 20 * time.Millisecond, 0, 0, 6 * time.Second, 0},
		{"Slow polls wait longer", 1000, 200 * time.Millisecond, 2, 0, 30 * time.Second, 0},
		{"Fewer running than the reserve", 100, 20 * time.Millisecond, 6, 5, 2 * time.Second, 0},
		{"Twice the reserve running", 100, 20 * time.Millisecond, 6, 11, 4 * time.Second, 0},
		{"A crowded machine", 200, 15 * time.Millisecond, 2, 12, 30 * time.Second, 0},
		{"Readers of a tail file wait longer", 1000, 15 * time.Millisecond, 2, 0, 45 * time.Second, tailPollMax},
		{"Readers of a tail file, slow polls", 1000, 200 * time.Millisecond, 2, 0, 60 * time.Second, tailPollMax},
	}
	for _, tt := range tests {
		longest := tt.longest
		if longest == 0 {
			longest = pollMax
		}
		for range 20 {
			got := pollRetry(tt.pollers, tt.cost, tt.reserve, tt.busy, longest)
			lo, hi := max(tt.want*8/10, pollMin), min(tt.want*12/10, longest)
			if got < lo || got > hi {
				t.Errorf("%s: pollRetry = %v, want %v within a fifth", tt.name, got, tt.want)
				break
			}
		}
	}
}
