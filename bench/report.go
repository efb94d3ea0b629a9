package main

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"cgichat/test/hostkit"

	_ "github.com/mattn/go-sqlite3" // to report the SQLite version the programs are built with
)

// report is one run of the benchmark: where, with what, and the results.
type report struct {
	Machine  machine        `json:"machine"`
	Config   config         `json:"parameters"`
	Files    fileLimit      `json:"open_files"`
	Settings []string       `json:"settings"` // CHAT_* settings beyond the defaults
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished"`
	Setups   []*setupResult `json:"setups"`
	Targets  []target       `json:"targets"`
}

// machine is what the numbers were measured on.
type machine struct {
	CPU       string  `json:"cpu"`
	Cores     int     `json:"cores"`
	Kernel    string  `json:"kernel"`
	MemoryGiB float64 `json:"memory_gib"`
	Go        string  `json:"go"`
	Apache    string  `json:"apache"`
	ModFcgid  string  `json:"mod_fcgid"`
	Nginx     string  `json:"nginx"`
	Fcgiwrap  string  `json:"fcgiwrap"`
	SQLite    string  `json:"sqlite"`
	Commit    string  `json:"commit"`
}

// readMachine describes this machine, the servers and the checkout.
func readMachine(source string) machine {
	m := machine{Cores: runtime.NumCPU()}
	m.CPU = firstField("/proc/cpuinfo", "model name")
	m.Kernel = strings.TrimSpace(readString("/proc/sys/kernel/osrelease"))
	var kb float64
	fmt.Sscanf(firstField("/proc/meminfo", "MemTotal"), "%f", &kb)
	m.MemoryGiB = kb / (1 << 20)
	m.Go = command(source, "go", "env", "GOVERSION")
	m.Apache = strings.TrimPrefix(firstLine(command("", hostkit.ApacheBin, "-v")), "Server version: ")
	m.Nginx = strings.TrimPrefix(command("", hostkit.NginxBin, "-v"), "nginx version: ")
	m.ModFcgid = command("", "dpkg-query", "-W", "-f", "${Version}", "libapache2-mod-fcgid")
	m.Fcgiwrap = command("", "dpkg-query", "-W", "-f", "${Version}", "fcgiwrap")
	if db, err := sql.Open("sqlite3", ":memory:"); err == nil {
		db.QueryRow("SELECT sqlite_version()").Scan(&m.SQLite)
		db.Close()
	}
	m.Commit = command("", "git", "rev-parse", "--short", "HEAD")
	if command("", "git", "status", "--porcelain", "--untracked-files=no") != "" {
		m.Commit += " (with uncommitted changes)"
	}
	return m
}

// command returns what a command printed (stdout and stderr), trimmed, or
// "unknown".
func command(dir, name string, args ...string) string {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// firstField returns the value of the first "key: value" line of a /proc
// file.
func firstField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func (r *report) writeJSON(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// target is one of the project's goals, checked against one setup.
type target struct {
	Setup    string `json:"setup"`
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Status   string `json:"status"` // met, not met, not measured
}

// Target statuses.
const (
	met         = "met"
	notMet      = "not met"
	notMeasured = "not measured"
)

func status(ok bool) string {
	if ok {
		return met
	}
	return notMet
}

// checkTargets compares the results with the goals of the benchmark issue:
// daemon setups at 1,000 streams, per-process setups at 200.
func checkTargets(cfg config, setups []*setupResult) []target {
	var ts []target
	for _, s := range setups {
		if s.Short == budgetSetup {
			ts = append(ts, budgetTarget(s))
			continue
		}
		hs, _ := hostkit.LookupSetup(s.Setup)
		n, fast, rateGoal := 200, false, 300.0
		if hs.Daemon {
			n, fast, rateGoal = 1000, true, 3000
		}
		var run *streamRun
		for _, r := range s.Runs {
			if r.Streams == n {
				run = r
			}
		}
		add := func(goal, measured, st string) {
			ts = append(ts, target{Setup: s.Short, Goal: goal, Measured: measured, Status: st})
		}
		latGoal := fmt.Sprintf("latency p50 ≤ 20 ms, p99 ≤ 100 ms at %s streams, nothing lost", thousands(n))
		if run == nil || run.Latency == nil {
			add(latGoal, "no run at that count", notMeasured)
		} else {
			l := run.Latency
			add(latGoal, fmt.Sprintf("p50 %s, p99 %s, %d lost", ms(l.P50), ms(l.P99), l.Lost),
				status(l.P50 <= 20 && l.P99 <= 100 && l.Lost == 0 && l.PostErrors == 0 && l.Posts > 0))
		}
		if fast {
			goal := "fan-out to 1,000 streams within 150 ms (worst post)"
			if run == nil || run.Fanout == nil || len(run.Fanout.Times) == 0 {
				add(goal, "no run at that count", notMeasured)
			} else {
				f := run.Fanout
				add(goal, fmt.Sprintf("worst %s, median %s of %d", ms(f.Worst), ms(f.Median), len(f.Times)),
					status(f.Worst <= 150 && f.Lost == 0))
			}
		}
		tpGoal := fmt.Sprintf("≥ %s posts/s, zero errors", thousands(int(rateGoal)))
		if s.Throughput == nil {
			add(tpGoal, "not run", notMeasured)
		} else {
			add(tpGoal, fmt.Sprintf("%s posts/s", thousands(int(s.Throughput.Best))), status(s.Throughput.Best >= rateGoal))
		}
		if run == nil || run.Idle == nil {
			add("idle cost", "no run at that count", notMeasured)
			continue
		}
		u := run.Idle
		cpu := u.CPUSeconds / u.Seconds * 100
		rss := mib(u.RSSBytes)
		if fast {
			add("1,000 idle streams ≤ 5 % of one core, ≤ 64 MiB RSS",
				fmt.Sprintf("%.2f %% of a core, %.1f MiB", cpu, rss), status(cpu <= 5 && rss <= 64))
		} else {
			per := float64(run.Streams)
			add("per idle stream ≤ 12 MiB RSS, ≤ 0.05 % of a core",
				fmt.Sprintf("%.2f MiB, %.4f %% of a core", rss/per, cpu/per), status(rss/per <= 12 && cpu/per <= 0.05))
		}
	}
	for _, s := range setups {
		hs, _ := hostkit.LookupSetup(s.Setup)
		if hs.Daemon {
			ts = append(ts, readersTargets(s)...)
		}
		if t, ok := stallTarget(s, hs); ok {
			ts = append(ts, t)
		}
	}
	return ts
}

// readersTargets checks the goals of issue 17 for a daemon setup, with
// latency from each post's request (not its 201) to every reader: at
// 1,000 readers p50 ≤ 8 ms and p99 ≤ 20 ms; at 10,000 p99 ≤ 100 ms, idle
// ≤ 3 % of one core and ≤ 300 MiB for every process together.
func readersTargets(s *setupResult) []target {
	find := func(n int) *streamRun {
		for _, r := range s.Runs {
			if r.Streams == n {
				return r
			}
		}
		return nil
	}
	var ts []target
	add := func(goal, measured, st string) {
		ts = append(ts, target{Setup: s.Short, Goal: goal, Measured: measured, Status: st})
	}
	goal := "1,000 readers: from each post's request to every reader p50 ≤ 8 ms, p99 ≤ 20 ms, nothing lost"
	if r := find(1000); r == nil || r.Latency == nil {
		add(goal, "no run at that count", notMeasured)
	} else {
		l := r.Latency
		add(goal, fmt.Sprintf("p50 %s, p99 %s, %d lost", ms(l.SendP50), ms(l.SendP99), l.Lost),
			status(l.SendP50 <= 8 && l.SendP99 <= 20 && l.Lost == 0 && l.PostErrors == 0 && l.Posts > 0))
	}
	r := find(10000)
	goal = "10,000 readers: from each post's request to every reader p99 ≤ 100 ms, nothing lost"
	if r == nil || r.Latency == nil {
		add(goal, "no run at that count", notMeasured)
	} else {
		l := r.Latency
		add(goal, fmt.Sprintf("p99 %s (p50 %s), %d lost", ms(l.SendP99), ms(l.SendP50), l.Lost),
			status(l.SendP99 <= 100 && l.Lost == 0 && l.PostErrors == 0 && l.Posts > 0))
	}
	goal = "10,000 idle readers ≤ 3 % of one core, ≤ 300 MiB RSS for every process together"
	if r == nil || r.Idle == nil {
		add(goal, "no run at that count", notMeasured)
	} else {
		u := r.Idle
		cpu := u.CPUSeconds / u.Seconds * 100
		add(goal, fmt.Sprintf("%.2f %% of a core, %.1f MiB (%s)", cpu, mib(u.RSSBytes), u.Comms), status(cpu <= 3 && mib(u.RSSBytes) <= 300))
	}
	return ts
}

// stallLimit returns issue 14's bound on what stalled readers of a
// room's whole backlog cost a setup: the stream daemon in all (64 MB), or
// each CGI stream process (16 MB); ok is false where it sets none.
func stallLimit(hs hostkit.Setup) (bytes uint64, what string, ok bool) {
	switch {
	case hs.Daemon:
		return 64e6, "the stream daemon", true
	case hs.CGI:
		return 16e6, "each stream process", true
	}
	return 0, "", false
}

// stallTarget checks the bound of stallLimit on the setup's backlog run.
func stallTarget(s *setupResult, hs hostkit.Setup) (target, bool) {
	limit, what, ok := stallLimit(hs)
	if !ok {
		return target{}, false
	}
	var run *stallRun
	for _, r := range s.Stalled {
		if r.Kind == "backlog" {
			run = r
		}
	}
	t := target{Setup: s.Short, Status: notMeasured, Measured: "not run"}
	if run == nil {
		t.Goal = fmt.Sprintf("stalled readers of a room's whole backlog: %s ≤ %.0f MB", what, float64(limit)/1e6)
		return t, true
	}
	t.Goal = fmt.Sprintf("%d stalled readers of %s messages of %s '<': %s ≤ %.0f MB", run.Readers, thousands(run.Messages), thousands(run.TextLen), what, float64(limit)/1e6)
	peak := run.Peak
	if !hs.Daemon {
		peak = run.Process
	}
	t.Measured = fmt.Sprintf("%.1f MB at most (%d of %d served)", float64(peak)/1e6, run.Served, run.Readers)
	if run.Error != "" {
		t.Measured += ": " + oneLine(run.Error)
		return t, true
	}
	t.Status = status(peak <= limit && run.Served == run.Readers)
	return t, true
}

// budgetTarget checks the budget issue's goal: 1,000 readers on a budget
// of 10 live streams under mod_cgid.
func budgetTarget(s *setupResult) target {
	t := target{Setup: s.Short, Goal: "1,000 readers on a budget of 10: p50 ≤ 1.5 s, p99 ≤ 5 s, ≤ 60 % of one core, nothing lost", Status: notMeasured}
	for _, run := range s.Budget {
		if run.Readers != 1000 || run.Budget != 10 || run.Latency == nil {
			continue
		}
		l := run.Latency
		t.Measured = fmt.Sprintf("p50 %s, p99 %s, %s%.0f %% of a core (web server %.0f %%), %d lost, at most %d stream programs (%d live)",
			ms(l.P50), ms(l.P99), atLeast(run), run.CPUPercent, run.ServerCPUPercent, l.Lost, run.MostProcesses, run.MostLive)
		t.Status = status(l.P50 <= 1500 && l.P99 <= 5000 && run.CPUPercent <= 60 && l.Lost == 0 && l.PostErrors == 0 && l.Posts > 0)
		if t.Status == status(true) && run.CPUCounted != "cgroup" {
			// A lower bound of the CPU cannot show it is low enough.
			t.Status = notMeasured
		}
	}
	if t.Measured == "" {
		t.Measured = "no run of 1,000 readers on a budget of 10"
	}
	return t
}

// atLeast marks a budget run's CPU as a lower bound when it was counted
// without the CGI programs that exited.
func atLeast(run *budgetRun) string {
	if run.CPUCounted == "cgroup" {
		return ""
	}
	return "at least "
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// ms renders milliseconds with a precision that suits their size.
func ms(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// thousands renders 1000 as "1,000".
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// markdown renders the report as docs/performance.md shows it.
func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m, c := r.Machine, r.Config
	p("## cgichat benchmark, %s\n\n", r.Started.Format("2006-01-02 15:04 UTC"))
	p("- Machine: %s, %d cores, %.0f GiB, Linux %s\n", m.CPU, m.Cores, m.MemoryGiB, m.Kernel)
	p("- Software: %s; %s with mod_fcgid %s; %s; fcgiwrap %s; SQLite %s; commit %s\n",
		m.Go, m.Apache, m.ModFcgid, m.Nginx, m.Fcgiwrap, m.SQLite, m.Commit)
	p("- Parameters: streams %v (per-process setups), %v (daemon setups); latency: %g posts/s for %g s; fan-out: %d single posts; idle: %g s (after %g s to settle); throughput: %d posters, %d streams reading, closed-loop probe then ≤ %d open-loop steps of %g s; CGI start: %d runs",
		c.Streams, c.DaemonStreams, c.Rate, c.LatencySeconds, c.FanoutPosts, c.IdleSeconds, c.SettleSeconds, c.Posters, c.ThroughputStreams, c.Steps, c.StepSeconds, c.StartRuns)
	if c.Quick {
		p(" (-quick)")
	}
	p("; stalled readers: %d of a room of %s messages of %s '<', %d live in a room posted to at %g/s, %g s each, a %d-byte receive buffer",
		c.StallReaders, thousands(c.StallMessages), thousands(c.StallTextLen), c.BusyReaders, c.BusyRate, c.StallSeconds, stallRcvBuf)
	p("\n- Settings: %s; everything else at deploy.sh's defaults (stream life 120 s, poll 250 ms, heartbeat: see docs/configuration.md)\n", strings.Join(slices.Concat(benchEnv, c.Env), " "))
	for _, n := range r.Files.Notes {
		p("- %s\n", n)
	}
	for _, s := range r.Setups {
		if len(s.Raised) > 0 {
			p("- %s, raised by the bench: %s\n", s.Short, strings.Join(s.Raised, "; "))
		}
	}
	for _, s := range r.Setups {
		if s.Error != "" {
			p("- **%s failed**: %s\n", s.Short, oneLine(s.Error))
		}
	}

	p("\n### Delivery latency and fan-out\n\n")
	p("From each post's 201 to the event at every open stream, over all (post, stream) pairs; an event that came before its 201 counts 0. \"From send\": from the moment the post was sent instead, so including the post itself. Fan-out: one post at a time, from its 201 until the last stream has it.\n\n")
	p("| setup | stream mode | streams | open in | p50 | p95 | p99 | max | from send p50 / p99 | lost | post errors | fan-out median | fan-out worst | load generator CPU |\n")
	p("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Setups {
		for _, run := range s.Runs {
			l, f := run.Latency, run.Fanout
			if l == nil {
				p("| %s | %s | %s | – | %s |  |  |  |  |  |  |  |  |  |\n", s.Short, s.StreamMode, thousands(run.Streams), oneLine(run.Error))
				continue
			}
			fm, fw := "–", "–"
			if f != nil && len(f.Times) > 0 {
				fm, fw = ms(f.Median), ms(f.Worst)
			}
			p("| %s | %s | %s | %.1f s | %s | %s | %s | %s | %s / %s | %d | %d | %s | %s | %.0f %% |\n", s.Short, s.StreamMode, thousands(run.Streams),
				run.OpenSeconds, ms(l.P50), ms(l.P95), ms(l.P99), ms(l.Max), ms(l.SendP50), ms(l.SendP99), l.Lost, l.PostErrors, fm, fw, l.LoadCPUPercent)
		}
	}

	p("\n### CPU per delivery\n\n")
	p("What delivering one post to one stream cost during the latency run, each process's CPU time (user + system) divided by the (post, stream) pairs delivered: a measure of the work per delivery that the machine's other load changes less than latency. Heartbeats and everything else the processes did meanwhile are included.\n\n")
	p("| setup | streams | deliveries | per delivery, every process | by process |\n")
	p("|---|---:|---:|---:|---|\n")
	for _, s := range r.Setups {
		for _, run := range s.Runs {
			l := run.Latency
			if l == nil || l.Samples == 0 || run.LatencyCPU == nil {
				continue
			}
			per := func(sec float64) float64 { return sec / float64(l.Samples) * 1e6 }
			total := l.LoadCPUSeconds
			parts := []string{fmt.Sprintf("load generator %.1f µs", per(l.LoadCPUSeconds))}
			names := slices.Sorted(maps.Keys(run.LatencyCPU))
			for _, name := range names {
				total += run.LatencyCPU[name]
				parts = append(parts, fmt.Sprintf("%s %.1f µs", name, per(run.LatencyCPU[name])))
			}
			p("| %s | %s | %s | %.1f µs | %s |\n", s.Short, thousands(run.Streams), thousands(l.Samples), per(total), strings.Join(parts, ", "))
		}
	}

	p("\n### Post throughput\n\n")
	p("The highest rate the posters sustained with zero errors (open loop, every post answered, ≥ 97 %% of the rate reached), after a closed-loop probe.\n\n")
	p("| setup | posters | closed-loop probe | errors in probe | sustained, zero errors | post round trip p50 / p99 there | steps |\n")
	p("|---|---:|---:|---:|---:|---:|---|\n")
	for _, s := range r.Setups {
		t := s.Throughput
		if t == nil {
			continue
		}
		at := "–"
		var steps []string
		for _, st := range t.Steps {
			mark := "✗"
			if st.Pass {
				mark = "✓"
			}
			steps = append(steps, fmt.Sprintf("%.0f%s", st.Target, mark))
			if st.Pass && st.Target == t.Best {
				at = ms(st.P50) + " / " + ms(st.P99)
			}
		}
		p("| %s | %d | %.0f posts/s | %d | %s posts/s | %s | %s |\n", s.Short, t.Posters, t.Probe.Achieved, t.Probe.Errors,
			thousands(int(t.Best)), at, strings.Join(steps, " "))
	}

	p("\n### Idle cost\n\n")
	p("Streams open and nothing posted: CPU time (user + system, every thread) and memory summed over every process serving them — the web server's processes, mod_fcgid's or fcgiwrap's, and cgichat's (both daemons in daemon setups). RSS counts shared pages in every process; PSS divides them. Per stream = total ÷ streams, fixed costs included; the 0-stream row is the servers alone.\n\n")
	p("| setup | streams | CPU, %% of one core | per stream | RSS | per stream | PSS | processes |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, s := range r.Setups {
		rows := []*streamRun{{Streams: 0, Idle: s.Baseline}}
		rows = append(rows, s.Runs...)
		for _, run := range rows {
			u := run.Idle
			if u == nil {
				continue
			}
			cpu := u.CPUSeconds / u.Seconds * 100
			perCPU, perRSS := "–", "–"
			if run.Streams > 0 {
				perCPU = fmt.Sprintf("%.4f %%", cpu/float64(run.Streams))
				perRSS = fmt.Sprintf("%.2f MiB", mib(u.RSSBytes)/float64(run.Streams))
			}
			p("| %s | %s | %.2f %% | %s | %.1f MiB | %s | %.1f MiB | %s |\n", s.Short, thousands(run.Streams), cpu, perCPU,
				mib(u.RSSBytes), perRSS, mib(u.PSSBytes), u.Comms)
		}
	}

	budget := false
	for _, s := range r.Setups {
		budget = budget || len(s.Budget) > 0
	}
	if budget {
		p("\n### A budget of live streams\n\n")
		p("Apache mod_cgid with CHAT_MAX_STREAMS: the readers past the live streams the budget allows poll, at the interval the stream works out, and between polls read the room's tail file when the poll names one. The readers come all at once, to a room of 20 messages; the measurement begins 40 s later, once each has polled again at its own pace, and lasts 60 s (the -quick run: at once, briefly). Latency from each post's 201 to the event at every reader, live or polling; CPU of every process of the host while the posts were delivered, CGI programs included (counted in a control group of the host's own; \"at least\" where none could be made, as /proc loses the programs mod_cgid does not wait for), and of it the web server's own processes (Apache serving the tail files among the rest); the stream programs running at once during the measurement, sampled every 100 ms (live: those that had run 2 s or more). The requests are those the readers made from the first post until every reader had every post: to the stream program, and for the tail files (of which answered 304), with the events the tail files brought.\n\n")
		p("| setup | readers | budget | p50 | p95 | p99 | max | lost | post errors | stream errors | CPU, %% of one core (web server) | stream programs at once (live) | stream requests | tail requests (304) | events from tails |\n")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, s := range r.Setups {
			for _, run := range s.Budget {
				l := run.Latency
				if l == nil {
					p("| %s | %s | %d | %s |  |  |  |  |  |  |  |  |  |  |  |\n", s.Short, thousands(run.Readers), run.Budget, oneLine(run.Error))
					continue
				}
				p("| %s | %s | %d | %s | %s | %s | %s | %d | %d | %d | %s%.0f %% (%.0f %%) | %d (%d) | %s | %s (%s) | %s |\n", s.Short, thousands(run.Readers), run.Budget,
					ms(l.P50), ms(l.P95), ms(l.P99), ms(l.Max), l.Lost, l.PostErrors, l.StreamErrors, atLeast(run), run.CPUPercent, run.ServerCPUPercent,
					run.MostProcesses, run.MostLive, thousands(l.StreamRequests), thousands(l.TailRequests), thousands(l.TailUnchanged), thousands(l.TailEvents))
			}
		}
	}

	stalled := false
	for _, s := range r.Setups {
		stalled = stalled || len(s.Stalled) > 0
	}
	if stalled {
		p("\n### Stalled readers\n\n")
		p("Connections that ask for a stream and never read it. Backlog: each asks for a room's whole history (`lastEventId=0`). Busy: each reads a room live while it is posted to. The most resident memory seen (sampled every 100 ms): of the stream processes together, of the largest one (a CGI process's own peak, VmHWM), and of every other process (the web server's). MB are 10⁶ bytes.\n\n")
		p("| setup | kind | readers (served) | messages | stream processes before | stream processes, most | one stream process, most | others, most | processes |\n")
		p("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, s := range r.Setups {
			for _, run := range s.Stalled {
				msgs := thousands(run.Messages)
				if run.Kind == "busy" {
					msgs = fmt.Sprintf("%s at %g/s", msgs, run.Rate)
				}
				if run.Error != "" {
					msgs += " (" + oneLine(run.Error) + ")"
				}
				p("| %s | %s | %d (%d) | %s | %.1f MB | %.1f MB | %.1f MB | %.1f MB | %d |\n", s.Short, run.Kind, run.Readers, run.Served, msgs,
					float64(run.Before)/1e6, float64(run.Peak)/1e6, float64(run.Process)/1e6, float64(run.Server)/1e6, run.Procs)
			}
		}
	}

	p("\n### CGI start cost\n\n")
	p("The deployed `post` run as a fresh CGI process (as the web server's user, against the setup's database): wall time from start to exit, and peak RSS (getrusage).\n\n")
	p("| setup | runs | wall p50 | wall max | peak RSS p50 | peak RSS max | errors |\n")
	p("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Setups {
		if sc := s.StartCost; sc != nil {
			p("| %s | %d | %s | %s | %.1f MiB | %.1f MiB | %d |\n", s.Short, sc.Runs, ms(sc.WallP50), ms(sc.WallMax), sc.MaxRSSP50, sc.MaxRSSMax, sc.Errors)
		}
	}

	p("\n### Targets\n\n")
	p("| setup | goal | measured | |\n|---|---|---|---|\n")
	for _, t := range r.Targets {
		p("| %s | %s | %s | %s |\n", t.Setup, t.Goal, t.Measured, t.Status)
	}
	return b.String()
}

// oneLine keeps the first line of an error, for a table cell.
func oneLine(s string) string {
	s = firstLine(s)
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}
