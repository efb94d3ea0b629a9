package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"cgichat/test/hostkit"
)

// stallRun is what readers that never read cost the host: those asking a
// room's whole backlog of long messages (backlog), or live readers of a
// room that keeps being posted to (busy).
type stallRun struct {
	Kind     string  `json:"kind"`                // backlog or busy
	Readers  int     `json:"readers"`             // stalled connections opened
	Served   int     `json:"served"`              // of them, the most served at once (FastCGI connections or CGI processes)
	Messages int     `json:"messages"`            // backlog: in the room; busy: posted while they stalled
	TextLen  int     `json:"text_len"`            // characters per message, all '<'
	Rate     float64 `json:"rate,omitempty"`      // busy: posts/s
	Seconds  float64 `json:"seconds"`             // how long memory was sampled
	RcvBuf   int     `json:"rcvbuf"`              // each reader's socket receive buffer, bytes
	PostErrs int     `json:"post_errors"`         // busy: posts that failed
	Before   uint64  `json:"stream_before"`       // RSS of the stream processes before, bytes
	Peak     uint64  `json:"stream_peak"`         // the most RSS of the stream processes together
	Process  uint64  `json:"stream_process_peak"` // the most RSS of one stream process (its VmHWM when it started within the run)
	Procs    int     `json:"stream_processes"`    // the most stream processes at once
	Server   uint64  `json:"server_peak"`         // the most RSS of the other processes (the web server's, the post program's)
	Error    string  `json:"error,omitempty"`
}

// Process names, from /proc/PID/stat: the programs as deployed.
const (
	streamComm = "stream"
	postComm   = "post"
)

// memPeaks samples the memory of a host's processes every
// hostkit.SampleEvery until stopped, keeping the largest values.
type memPeaks struct {
	roots func() []int
	since uint64 // clock ticks since boot: processes started after it report their VmHWM
	r     *hostkit.Repeater

	mu                     sync.Mutex
	stream, process, other uint64
	procs                  int
}

func sampleMemory(t hostkit.T, roots func() []int) *memPeaks {
	m := &memPeaks{roots: roots, since: bootTicks()}
	m.r = hostkit.Repeat(t, m.take)
	return m
}

func (m *memPeaks) take() {
	all := allStats()
	var stream, other, process uint64
	procs := 0
	for _, pid := range family(all, m.roots()) {
		st := all[pid]
		rss := currentRSS(pid)
		if st.comm != streamComm {
			other += rss
			continue
		}
		stream += rss
		procs++
		one := rss
		if st.start >= m.since {
			one = max(one, peakRSS(pid))
		}
		process = max(process, one)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stream, m.other, m.process = max(m.stream, stream), max(m.other, other), max(m.process, process)
	m.procs = max(m.procs, procs)
}

// Stop ends the sampling and returns the peaks.
func (m *memPeaks) Stop() (stream, process, other uint64, procs int) {
	m.r.Stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stream, m.process, m.other, m.procs
}

// bootTicks returns the time since boot in clock ticks, the unit of a
// process's start time.
func bootTicks() uint64 {
	var up float64
	fmt.Sscanf(readString("/proc/uptime"), "%f", &up)
	return uint64(up * clockTicks)
}

// benchStalled measures stalled readers on a started host: cfg.StallReaders
// asking for the whole of a room of cfg.StallMessages long messages, and,
// where a daemon serves streams, cfg.BusyReaders live readers of a room
// posted to at cfg.BusyRate while they read nothing.
func benchStalled(ctx context.Context, rt *runner, cfg config, h *hostkit.Host, lg *loadProc, roots func() []int) []*stallRun {
	var runs []*stallRun
	if cfg.StallReaders > 0 {
		room := hostkit.NewRoom("stall")
		fmt.Fprintf(os.Stderr, "bench: %s: %d stalled readers of %d messages\n", h.Setup.Name, cfg.StallReaders, cfg.StallMessages)
		run := &stallRun{Kind: "backlog", Readers: cfg.StallReaders, Messages: cfg.StallMessages, TextLen: cfg.StallTextLen, RcvBuf: stallRcvBuf}
		rep := lg.call(ctx, rt, request{Op: "fill", Room: room, Posts: cfg.StallMessages, Posters: cfg.Posters, TextLen: cfg.StallTextLen})
		switch {
		case rep.Error != "":
			run.Error = "filling the room: " + rep.Error
		case rep.Fill.Errors > 0:
			run.Error = fmt.Sprintf("filling the room: %d posts failed: %s", rep.Fill.Errors, rep.Fill.ErrorSample)
		default:
			stallAndSample(ctx, rt, cfg, h, lg, roots, room, run, true, nil)
		}
		runs = append(runs, run)
	}
	if cfg.BusyReaders > 0 && h.Setup.Daemon {
		room := hostkit.NewRoom("busy")
		fmt.Fprintf(os.Stderr, "bench: %s: %d stalled readers in a busy room\n", h.Setup.Name, cfg.BusyReaders)
		run := &stallRun{Kind: "busy", Readers: cfg.BusyReaders, TextLen: cfg.StallTextLen, Rate: cfg.BusyRate, RcvBuf: stallRcvBuf}
		posts := max(1, int(cfg.BusyRate*cfg.StallSeconds))
		stallAndSample(ctx, rt, cfg, h, lg, roots, room, run, false, func() {
			rep := lg.call(ctx, rt, request{Op: "fill", Room: room, Posts: posts, Posters: cfg.Posters, TextLen: cfg.StallTextLen, Rate: cfg.BusyRate})
			if rep.Fill != nil {
				run.Messages, run.PostErrs = rep.Fill.Posts, rep.Fill.Errors
			}
			if rep.Error != "" {
				run.Error = rep.Error
			}
		})
		runs = append(runs, run)
	}
	return runs
}

// stallAndSample restarts the host's servers (so that what the runs before
// left in their memory is not measured), opens run.Readers stalled readers
// of room, samples the host's memory while they are served (for
// cfg.StallSeconds, or while during runs), closes them and waits for the
// host to free them.
func stallAndSample(ctx context.Context, rt *runner, cfg config, h *hostkit.Host, lg *loadProc, roots func() []int, room string, run *stallRun, resume bool, during func()) {
	h.Stop()
	h.Start(rt)
	time.Sleep(seconds(cfg.SettleSeconds))
	before := h.Connections(rt)
	_, run.Before, _, _ = sampleMemory(rt, roots).Stop()
	mem := sampleMemory(rt, roots)
	began := time.Now()
	served := hostkit.Sample(rt, func() int { return servingRoom(rt, h, room, before) })
	rep := lg.call(ctx, rt, request{Op: "stall", Room: room, Streams: run.Readers, Resume: resume})
	if rep.Error != "" {
		run.Error = rep.Error
	}
	if during != nil {
		during()
	} else {
		t := time.NewTimer(seconds(cfg.StallSeconds))
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	run.Seconds = time.Since(began).Seconds()
	run.Peak, run.Process, run.Server, run.Procs = mem.Stop()
	run.Served, _ = served.Stop()
	lg.call(ctx, rt, request{Op: "close"})
	drain(ctx, rt, h)
}

// servingRoom counts the stream requests of room being served: CGI
// processes whose query names the room, or FastCGI connections not among
// before.
func servingRoom(rt *runner, h *hostkit.Host, room string, before map[string]bool) int {
	if !h.Setup.CGI {
		return serving(rt, h, room, before)
	}
	n := 0
	want := []byte("QUERY_STRING=room=" + room + "&")
	for _, pid := range hostkit.PIDsRunning(h.StreamBin) {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err == nil && bytes.Contains(b, want) {
			n++
		}
	}
	return n
}
