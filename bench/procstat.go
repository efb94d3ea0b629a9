package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/procfs"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture Go runs servers on (procfs assumes the
// same, and keeps its constant to itself).
const clockTicks = 100

// procFS is /proc, opened on first use; its error is why it could not be.
var procFS = sync.OnceValues(procfs.NewDefaultFS)

// procStat is what /proc/PID/stat tells of one process.
type procStat struct {
	pid, ppid int
	comm      string
	cpu       uint64 // utime + stime, in clock ticks, of all its threads
	children  uint64 // cutime + cstime, in clock ticks: of its children it waited for
	start     uint64 // start time since boot, in clock ticks: tells a reused pid
}

// proc returns the /proc directory of pid; ok is false when the process is
// gone (or /proc cannot be read).
func proc(pid int) (procfs.Proc, bool) {
	fs, err := procFS()
	if err != nil {
		return procfs.Proc{}, false
	}
	p, err := fs.Proc(pid)
	return p, err == nil
}

// statOf reads the stat of p; ok is false when it is gone.
func statOf(p procfs.Proc) (procStat, bool) {
	s, err := p.Stat()
	if err != nil {
		return procStat{}, false
	}
	return procStat{
		pid:      p.PID,
		ppid:     s.PPID,
		comm:     s.Comm,
		cpu:      uint64(s.UTime) + uint64(s.STime),
		children: uint64(max(0, s.CUTime)) + uint64(max(0, s.CSTime)),
		start:    s.Starttime,
	}, true
}

// allStats reads every process's stat; processes that end while it reads
// are left out.
func allStats() map[int]procStat {
	fs, err := procFS()
	if err != nil {
		return nil
	}
	procs, _ := fs.AllProcs()
	all := make(map[int]procStat, len(procs))
	for _, p := range procs {
		if st, ok := statOf(p); ok {
			all[p.PID] = st
		}
	}
	return all
}

// family returns roots and all their descendants among all.
func family(all map[int]procStat, roots []int) []int {
	children := make(map[int][]int)
	for pid, st := range all {
		children[st.ppid] = append(children[st.ppid], pid)
	}
	var out []int
	seen := make(map[int]bool)
	queue := append([]int(nil), roots...)
	for len(queue) > 0 && len(out) < len(all)+len(roots) {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		if _, ok := all[pid]; ok {
			out = append(out, pid)
		}
		queue = append(queue, children[pid]...)
	}
	return out
}

// memory returns a process's resident set (VmRSS: statm's resident pages
// times the page size, shared pages counted in full) and proportional set
// (Pss from smaps_rollup: shared pages divided among their users), in
// bytes. Both are 0 for a process that is gone; Pss is 0 where
// smaps_rollup cannot be read.
func memory(pid int) (rss, pss uint64) {
	p, ok := proc(pid)
	if !ok {
		return 0, 0
	}
	if r, err := p.ProcSMapsRollup(); err == nil {
		pss = r.Pss
	}
	return resident(p), pss
}

// resident returns p's resident set (VmRSS: statm's resident pages times
// the page size), in bytes, 0 when it is gone.
func resident(p procfs.Proc) uint64 {
	m, err := p.Statm()
	if err != nil {
		return 0
	}
	return m.ResidentBytes()
}

// currentRSS returns a process's resident set in bytes, 0 when it is gone.
func currentRSS(pid int) uint64 {
	p, ok := proc(pid)
	if !ok {
		return 0
	}
	return resident(p)
}

// peakRSS returns the most a process has held resident in its life
// (VmHWM), in bytes, 0 when it is gone.
func peakRSS(pid int) uint64 {
	p, ok := proc(pid)
	if !ok {
		return 0
	}
	s, err := p.NewStatus()
	if err != nil {
		return 0
	}
	return s.VmHWM
}

// cpuTotal returns the CPU time the family of roots has used, its own and
// that of the children it waited for: under mod_cgid a CGI program that
// ran and exited between two samples is counted in its parent's (the cgid
// daemon's) total. The difference of two totals is what the family used
// in between, short-lived programs included. Of it, server is what the
// processes other than the named programs used themselves: the web
// server's own work (its static files, its 304s), without the programs it
// ran. Names are commands as /proc shows them (the file's name, cut to 15
// bytes).
func cpuTotal(roots []int, programs ...string) (all, server time.Duration) {
	stats := allStats()
	var ticks, own uint64
	for _, pid := range family(stats, roots) {
		st := stats[pid]
		ticks += st.cpu + st.children
		if !slices.Contains(programs, st.comm) {
			own += st.cpu
		}
	}
	return time.Duration(ticks) * time.Second / clockTicks, time.Duration(own) * time.Second / clockTicks
}

// comm returns the command /proc shows for a program at path.
func comm(path string) string {
	name := filepath.Base(path)
	return name[:min(len(name), 15)]
}

// usage is the cost of a family of processes over a window of time.
type usage struct {
	Seconds    float64 `json:"seconds"`     // length of the window
	CPUSeconds float64 `json:"cpu_seconds"` // user + system time of every process, all threads
	RSSBytes   uint64  `json:"rss_bytes"`   // summed VmRSS at the end
	PSSBytes   uint64  `json:"pss_bytes"`   // summed Pss at the end
	Processes  int     `json:"processes"`   // how many were alive at the end
	Comms      string  `json:"comms"`       // their names, counts and summed RSS
}

// measure samples the family of roots every second for d (or until stop
// closes) and returns its CPU time over the window and its memory at the
// end. A process that starts within the window counts all its CPU time; one
// that ends counts what it had used at the last sample.
func measure(roots func() []int, d time.Duration, stop <-chan struct{}) usage {
	type key struct {
		pid   int
		start uint64
	}
	first := make(map[key]uint64) // CPU at the first sample, for processes alive then
	last := make(map[key]uint64)
	sample := func(initial bool) []int {
		all := allStats()
		pids := family(all, roots())
		for _, pid := range pids {
			st := all[pid]
			k := key{pid, st.start}
			if _, ok := last[k]; !ok {
				if initial {
					first[k] = st.cpu
				} else {
					first[k] = 0
				}
			}
			last[k] = st.cpu
		}
		return pids
	}
	began := time.Now()
	sample(true)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
wait:
	for {
		select {
		case <-tick.C:
			sample(false)
		case <-deadline.C:
			break wait
		case <-stop:
			break wait
		}
	}
	pids := sample(false)
	u := usage{Seconds: time.Since(began).Seconds(), Processes: len(pids)}
	for k, cpu := range last {
		u.CPUSeconds += float64(cpu-min(cpu, first[k])) / clockTicks
	}
	type share struct {
		n   int
		rss uint64
	}
	comms := make(map[string]share)
	all := allStats()
	for _, pid := range pids {
		rss, pss := memory(pid)
		u.RSSBytes += rss
		u.PSSBytes += pss
		c := comms[all[pid].comm]
		comms[all[pid].comm] = share{c.n + 1, c.rss + rss}
	}
	var parts []string
	for name, c := range comms {
		parts = append(parts, fmt.Sprintf("%s×%d %.1f MiB", name, c.n, mib(c.rss)))
	}
	slices.Sort(parts)
	u.Comms = strings.Join(parts, ", ")
	return u
}

// cpuByName returns the CPU time each process of the family of roots has
// used, summed by process name (nginx, stream, post…), in seconds.
func cpuByName(roots []int) map[string]float64 {
	all := allStats()
	out := make(map[string]float64)
	for _, pid := range family(all, roots) {
		out[all[pid].comm] += float64(all[pid].cpu) / clockTicks
	}
	return out
}
