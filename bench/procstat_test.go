package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"
)

// startChild starts name with args as a child of the test process, to be
// killed and waited for at the end of the test at the latest.
func startChild(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	cmd := exec.CommandContext(ctx, name, args...)
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	return cmd
}

// TestAllStats checks allStats on the test process, on a child whose
// name holds spaces and parentheses and is longer than the kernel keeps,
// and on pids that do not exist.
func TestAllStats(t *testing.T) {
	self, ok := allStats()[os.Getpid()]
	if !ok {
		t.Fatal("allStats has no test process")
	}
	if self.pid != os.Getpid() || self.ppid != os.Getppid() || self.start == 0 {
		t.Errorf("allStats of the test process = %+v, want pid %d, ppid %d and a start time", self, os.Getpid(), os.Getppid())
	}
	if want := comm(os.Args[0]); self.comm != want {
		t.Errorf("the test process's comm is %q, want %q", self.comm, want)
	}

	// comm is the name the program was started by, cut to 15 bytes.
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep:", err)
	}
	odd := filepath.Join(t.TempDir(), "a) (b c)-and-more")
	if err := os.Symlink(sleep, odd); err != nil {
		t.Fatal(err)
	}
	child := startChild(t, odd, "5")
	var st procStat
	for range 100 { // the child's comm is the test binary's until it execs: up to 2 s
		if st, ok = allStats()[child.Process.Pid]; ok && st.comm == comm(odd) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.comm != "a) (b c)-and-mo" || st.ppid != os.Getpid() || st.start < self.start {
		t.Errorf("allStats of the child = %+v, want comm %q, ppid %d, start ≥ %d", st, "a) (b c)-and-mo", os.Getpid(), self.start)
	}

	all := allStats()
	for _, pid := range []int{-1, 0, 1 << 30} {
		if st, ok := all[pid]; ok {
			t.Errorf("allStats holds pid %d: %+v", pid, st)
		}
	}
}

// TestFamilyCPU spins a grandchild (timeout runs sh, which loops) and
// checks that the family of the test process holds both, that cpuByName
// and cpuTotal see the loop's CPU time (and no more than the time it had),
// and that once the child is stopped and waited for its time is counted
// in the test process's children's time.
func TestFamilyCPU(t *testing.T) {
	if _, err := exec.LookPath("timeout"); err != nil {
		t.Skip("no timeout:", err)
	}
	began := time.Now()
	// timeout ends the loop after 10 s at the latest; the test stops it
	// sooner.
	child := startChild(t, "timeout", "10", "sh", "-c", "while :; do :; done")
	me := []int{os.Getpid()}

	var spun float64
	var kids []int
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < 250 && time.Now().Before(deadline) && spun < 0.1; i++ {
		time.Sleep(20 * time.Millisecond)
		kids = family(allStats(), me)
		spun = cpuByName(me)["sh"]
	}
	if spun <= 0 {
		t.Fatalf("cpuByName of the test process sees no CPU time of sh: %v", cpuByName(me))
	}
	if most := time.Since(began).Seconds()*float64(runtime.NumCPU()) + 0.02; spun > most {
		t.Errorf("sh used %.2f s of CPU in %v on %d processors", spun, time.Since(began), runtime.NumCPU())
	}
	if !slices.Contains(kids, os.Getpid()) || !slices.Contains(kids, child.Process.Pid) || len(kids) < 3 {
		t.Errorf("family of the test process = %v, want it (%d), timeout (%d) and sh", kids, os.Getpid(), child.Process.Pid)
	}
	all, server := cpuTotal(me, "sh")
	if all < time.Duration(spun*float64(time.Second)) || server > all-time.Duration(spun*float64(time.Second)) {
		t.Errorf("cpuTotal = %v, server %v; want all ≥ sh's %.2f s and server without it", all, server, spun)
	}

	// timeout passes the signal on to sh and waits for it.
	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	self, ok := allStats()[os.Getpid()]
	if !ok {
		t.Fatal("allStats has no test process")
	}
	if float64(self.children)/clockTicks < spun {
		t.Errorf("once waited for, the children's time is %d ticks, want ≥ sh's %.2f s", self.children, spun)
	}
	if after, _ := cpuTotal(me); after < time.Duration(spun*float64(time.Second)) {
		t.Errorf("cpuTotal once the child exited = %v, want ≥ sh's %.2f s", after, spun)
	}
}

// TestMemory checks memory, currentRSS and peakRSS on the test process and
// on a pid that does not exist.
func TestMemory(t *testing.T) {
	rss, pss := memory(os.Getpid())
	// Both in bytes: a Go test process holds megabytes, most of them its
	// own (Pss in kB would be a thousandth of the RSS).
	if rss < 1<<20 || pss < rss/64 || pss > rss {
		t.Errorf("memory of the test process = rss %d, pss %d bytes; want 1 MiB ≤ rss, rss/64 ≤ pss ≤ rss", rss, pss)
	}
	now := currentRSS(os.Getpid())
	if peak := peakRSS(os.Getpid()); now == 0 || peak < now {
		t.Errorf("the test process holds %d bytes, its peak is %d; want 0 < held ≤ peak", now, peak)
	}
	gone := 1 << 30
	if rss, pss := memory(gone); rss != 0 || pss != 0 {
		t.Errorf("memory of a pid that does not exist = rss %d, pss %d; want 0, 0", rss, pss)
	}
	if now, peak := currentRSS(gone), peakRSS(gone); now != 0 || peak != 0 {
		t.Errorf("a pid that does not exist holds %d bytes, at most %d; want 0, 0", now, peak)
	}
}
