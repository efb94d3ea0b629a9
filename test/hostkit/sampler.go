package hostkit

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SampleEvery is how often a Sampler counts.
const SampleEvery = 100 * time.Millisecond

// samplerLimit bounds a Sampler's life should nobody stop it.
const samplerLimit = 15 * time.Minute

// Repeater calls a function every SampleEvery in the background, from
// before Repeat returns until Stop, t's cleanups or samplerLimit, and once
// more as it stops.
type Repeater struct {
	take func()
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Repeat starts calling take.
func Repeat(t T, take func()) *Repeater {
	r := &Repeater{take: take, stop: make(chan struct{}), done: make(chan struct{})}
	take()
	go r.run()
	t.Cleanup(r.Stop)
	return r
}

func (r *Repeater) run() {
	defer close(r.done)
	tick := time.NewTicker(SampleEvery)
	defer tick.Stop()
	limit := time.After(samplerLimit)
	for {
		select {
		case <-tick.C:
			r.take()
		case <-r.stop:
			return
		case <-limit:
			return
		}
	}
}

// Stop ends the calls after a last one.
func (r *Repeater) Stop() {
	r.once.Do(func() {
		close(r.stop)
		<-r.done
		r.take()
	})
}

// Sampler counts something (an account's processes, a host's stream
// processes) every SampleEvery in the background and keeps the largest
// count seen.
type Sampler struct {
	count func() int
	r     *Repeater

	mu      sync.Mutex
	max     int
	samples int
}

// Sample starts counting with count until Stop, t's cleanups, or
// samplerLimit; the first count is taken before it returns.
func Sample(t T, count func() int) *Sampler {
	s := &Sampler{count: count}
	s.r = Repeat(t, s.take)
	return s
}

func (s *Sampler) take() {
	n := s.count()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples++
	s.max = max(s.max, n)
}

// Max returns the largest count seen so far and how many counts were
// taken.
func (s *Sampler) Max() (largest, samples int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max, s.samples
}

// Stop ends the counting, takes a last count, and returns Max.
func (s *Sampler) Stop() (largest, samples int) {
	s.r.Stop()
	return s.Max()
}

// StreamProcesses counts the processes running h's stream program: for a
// CGI setup, one per open stream.
func (h *Host) StreamProcesses() int { return len(PIDsRunning(h.StreamBin)) }

// OlderThan counts the processes among pids that have run at least d (a
// live stream's program, not a poll's, which answers and exits).
func OlderThan(pids []int, d time.Duration) int {
	uptime, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return len(pids)
	}
	now, _ := strconv.ParseFloat(strings.Fields(string(uptime))[0], 64)
	n := 0
	for _, pid := range pids {
		// starttime, in clock ticks (100 a second).
		fields, err := StatFields(pid)
		if err != nil || len(fields) < 20 {
			continue
		}
		start, _ := strconv.ParseFloat(fields[19], 64)
		if now-start/100 >= d.Seconds() {
			n++
		}
	}
	return n
}
