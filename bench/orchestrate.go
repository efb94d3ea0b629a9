package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"cgichat/test/hostkit"
)

// benchEnv is what the benchmark sets beyond deploy.sh's defaults: every
// poster and stream comes from 127.0.0.1, so the per-address rate limit
// and stream cap would refuse it; and the setups measure streams, not the
// budget that turns them into polls past a few (the budget setup sets its
// own).
var benchEnv = []string{"CHAT_RATE_LIMIT=off", "CHAT_STREAMS_PER_CLIENT=0", "CHAT_MAX_STREAMS=0"}

// Bounds of the orchestrator's waits.
const (
	callTimeout  = 15 * time.Minute // one load generator command (its own bound is 10 min)
	servingWait  = 3 * time.Minute  // until a buffering host serves every stream
	drainWait    = 60 * time.Second // until closed streams are freed
	signalGrace  = 30 * time.Second // after Ctrl-C, before cleaning up regardless
	replyMaxSize = 16 << 20
)

// run is the orchestrator: it measures every setup of the configuration
// and prints the report. It returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var mu sync.Mutex
	var active *runner // the setup being measured, for cleanup on a signal
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		sig, ok := <-sigs
		if !ok {
			return
		}
		fmt.Fprintf(stderr, "bench: %v: stopping the servers\n", sig)
		stop()
		time.Sleep(signalGrace)
		mu.Lock()
		if active != nil {
			active.cleanup()
		}
		mu.Unlock()
		hostkit.RemoveSource()
		os.Exit(130)
	}()

	rep := &report{Config: cfg, Started: time.Now().UTC()}
	rep.Files = raiseFileLimit(filesNeeded(mostStreams(cfg), cfg.Posters))
	for _, n := range rep.Files.Notes {
		fmt.Fprintf(stderr, "bench: %s\n", n)
	}
	top := &runner{log: stderr}
	err = top.do(func() {
		hostkit.RequireTools(top, hostkit.ApacheBin, hostkit.NginxBin, hostkit.FcgiwrapBin)
		fmt.Fprintln(stderr, "bench: building the programs (deploy.sh --dry-run)")
		hostkit.WarmBuild(top)
		rep.Machine = readMachine(hostkit.SourceDir(top))
	})
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		hostkit.RemoveSource()
		return 1
	}
	for _, name := range cfg.Setups {
		if ctx.Err() != nil {
			break
		}
		s, _ := hostkit.LookupSetup(setupNames[name])
		r := &runner{log: stderr}
		mu.Lock()
		active = r
		mu.Unlock()
		res := &setupResult{Setup: s.Name, Short: name}
		bench := benchSetup
		if name == budgetSetup {
			bench = benchBudget
		}
		if err := r.do(func() { bench(ctx, r, cfg, rep.Files, s, res) }); err != nil {
			res.Error = err.Error()
			fmt.Fprintf(stderr, "bench: %s failed: %v\n", name, err)
		}
		r.cleanup()
		mu.Lock()
		active = nil
		mu.Unlock()
		rep.Setups = append(rep.Setups, res)
		if cfg.Hold {
			break
		}
	}
	top.cleanup()
	hostkit.RemoveSource()
	if cfg.Hold {
		return 0
	}
	rep.Finished = time.Now().UTC()
	rep.Targets = checkTargets(cfg, rep.Setups)
	fmt.Fprint(stdout, rep.markdown())
	if err := rep.writeJSON(cfg.JSON); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "bench: wrote %s\n", cfg.JSON)
	if ctx.Err() != nil {
		return 130
	}
	for _, s := range rep.Setups {
		if s.Error != "" {
			return 1
		}
	}
	return 0
}

// setupResult is everything measured on one setup.
type setupResult struct {
	Setup      string            `json:"setup"`
	Short      string            `json:"short"`
	StreamMode string            `json:"stream_mode"`
	Raised     []string          `json:"server_settings_raised"` // what the bench changed from the deployed configuration
	Baseline   *usage            `json:"idle_baseline"`          // the servers with no stream open
	Runs       []*streamRun      `json:"runs"`
	Throughput *throughputResult `json:"throughput"`
	StartCost  *startCost        `json:"cgi_start_cost"`
	Budget     []*budgetRun      `json:"budget_runs,omitempty"`
	Stalled    []*stallRun       `json:"stalled,omitempty"`
	Error      string            `json:"error,omitempty"`
}

// streamRun is what one count of open streams measured.
type streamRun struct {
	Streams      int            `json:"streams"`
	OpenSeconds  float64        `json:"open_seconds"` // until every stream was served
	Idle         *usage         `json:"idle"`
	Latency      *latencyResult `json:"latency"`
	Fanout       *fanoutResult  `json:"fanout"`
	DrainSeconds float64        `json:"drain_seconds"` // after closing, until every stream was freed (before the next run)
	// LatencyCPU is the CPU time the host's processes used during the
	// latency run, in seconds by process name; with the load generator's
	// own, what each delivery of a post to a stream cost.
	LatencyCPU map[string]float64 `json:"latency_cpu_seconds"`
	Error      string             `json:"error,omitempty"`
}

// mostStreams returns the most streams any run of cfg opens at once.
func mostStreams(cfg config) int {
	return slices.Max([]int{slices.Max(cfg.Streams), slices.Max(cfg.DaemonStreams), slices.Max(cfg.BudgetReaders),
		cfg.ThroughputStreams, cfg.StallReaders, cfg.BusyReaders})
}

// benchSetup deploys s, starts it and measures it into res.
func benchSetup(ctx context.Context, rt *runner, cfg config, files fileLimit, s hostkit.Setup, res *setupResult) {
	counts := cfg.Streams
	if s.Daemon {
		counts = cfg.DaemonStreams
	}
	most := slices.Max([]int{slices.Max(counts), cfg.ThroughputStreams, cfg.StallReaders, cfg.BusyReaders})
	h := hostkit.NewHost(rt, s)
	h.Env = slices.Concat(benchEnv, cfg.Env)
	res.StreamMode = "live"
	if s.Batch {
		res.StreamMode = "batch"
	}
	h.ApacheConf, h.NginxWorkerConnections, res.Raised = serverLimits(s, most, cfg.Posters)
	if h.NginxWorkerConnections > 0 {
		h.NginxRlimitNofile = int(min(uint64(h.NginxWorkerConnections)+fileSlack, files.Hard))
		res.Raised = append(res.Raised, fmt.Sprintf("nginx worker_rlimit_nofile %d", h.NginxRlimitNofile))
	}
	fmt.Fprintf(os.Stderr, "bench: %s: deploying\n", res.Short)
	h.Deploy(rt)
	h.Start(rt)
	if cfg.Hold {
		hold(ctx, h)
		return
	}
	lg := startLoad(rt, h.URL)
	roots := serverRoots(h)

	fmt.Fprintf(os.Stderr, "bench: %s: idle servers, %v\n", res.Short, seconds(cfg.IdleSeconds))
	time.Sleep(seconds(cfg.SettleSeconds))
	u := measure(roots, seconds(cfg.IdleSeconds), ctx.Done())
	res.Baseline = &u

	for i, n := range counts {
		if ctx.Err() != nil {
			rt.Fatalf("interrupted")
		}
		// Streams closed by the previous run must be gone before this
		// run measures what open streams cost.
		if i > 0 {
			res.Runs[i-1].DrainSeconds = drain(ctx, rt, h)
		}
		run := &streamRun{Streams: n}
		res.Runs = append(res.Runs, run)
		fmt.Fprintf(os.Stderr, "bench: %s: %d streams\n", res.Short, n)
		room := hostkit.NewRoom("bench")
		began := time.Now()
		if err := openStreams(ctx, rt, h, lg, room, n); err != nil {
			run.Error = err.Error()
			fmt.Fprintf(os.Stderr, "bench: %s: %d streams: %v\n", res.Short, n, err)
			lg.call(ctx, rt, request{Op: "close"})
			continue
		}
		run.OpenSeconds = time.Since(began).Seconds()
		time.Sleep(seconds(cfg.SettleSeconds))
		u := measure(roots, seconds(cfg.IdleSeconds), ctx.Done())
		run.Idle = &u
		cpu0 := cpuByName(roots())
		rep := lg.call(ctx, rt, request{Op: "latency", Room: room, Rate: cfg.Rate, Seconds: cfg.LatencySeconds, Batch: s.Batch})
		run.Latency = rep.Latency
		run.LatencyCPU = cpuSince(cpu0, cpuByName(roots()))
		if rep.Error != "" {
			run.Error = rep.Error
		}
		rep = lg.call(ctx, rt, request{Op: "fanout", Room: room, Posts: cfg.FanoutPosts, Batch: s.Batch})
		run.Fanout = rep.Fanout
		if rep.Error != "" {
			run.Error = rep.Error
		}
		lg.call(ctx, rt, request{Op: "close"})
	}

	// The last run's streams too must be gone: under mod_cgid a stream
	// outlives its client by a few heartbeats, and lingering streams woken
	// by every post would be measured instead of the post.
	if len(res.Runs) > 0 {
		res.Runs[len(res.Runs)-1].DrainSeconds = drain(ctx, rt, h)
	}
	fmt.Fprintf(os.Stderr, "bench: %s: post throughput, %d posters\n", res.Short, cfg.Posters)
	room := hostkit.NewRoom("throughput")
	if cfg.ThroughputStreams > 0 {
		if err := openStreams(ctx, rt, h, lg, room, cfg.ThroughputStreams); err != nil {
			rt.Fatalf("throughput: %v", err)
		}
	}
	rep := lg.call(ctx, rt, request{Op: "throughput", Room: room, Posters: cfg.Posters, Seconds: cfg.StepSeconds, Steps: cfg.Steps})
	if rep.Error != "" {
		rt.Fatalf("throughput: %s", rep.Error)
	}
	res.Throughput = rep.Throughput
	lg.call(ctx, rt, request{Op: "close"})
	drain(ctx, rt, h)

	res.Stalled = benchStalled(ctx, rt, cfg, h, lg, roots)

	fmt.Fprintf(os.Stderr, "bench: %s: CGI start cost, %d runs\n", res.Short, cfg.StartRuns)
	sc := measureStartCost(ctx, h, cfg.StartRuns, cfg.Env)
	res.StartCost = &sc
}

// serverRoots returns what lists the processes the host's servers were
// started as: their families are what serve it.
func serverRoots(h *hostkit.Host) func() []int {
	return func() []int {
		var pids []int
		for _, p := range h.Procs() {
			pids = append(pids, p.Pid())
		}
		return pids
	}
}

// budgetSetup is the setup that measures a budget of live streams with
// many readers, most of them polling.
const budgetSetup = "apache-cgid-budget"

// How long the budget setup lets its readers settle into polling after
// they arrived together (longer than the longest poll interval, 30 s, and
// its spread), and how long it then measures.
const (
	budgetSettle  = 40 * time.Second
	budgetMeasure = 60 * time.Second
)

// budgetHistory is how many messages the budget setup's room holds before
// its readers come.
const budgetHistory = 20

// budgetRun is what one count of readers measured on the budget setup.
type budgetRun struct {
	Readers int            `json:"readers"`
	Budget  int            `json:"budget"`
	Latency *latencyResult `json:"latency"`
	// CPUPercent is what every process of the host used while posts were
	// delivered (the web server, its CGI programs), in % of one core.
	// CPUCounted says how: "cgroup", every process the web server started,
	// or "/proc", without the CGI programs that exited (mod_cgid waits for
	// none: a lower bound).
	CPUPercent float64 `json:"cpu_percent"`
	CPUCounted string  `json:"cpu_counted"`
	// ServerCPUPercent is the part of it the web server's own processes
	// used (the tail files' requests among others), not its programs.
	ServerCPUPercent float64 `json:"server_cpu_percent"`
	// MostProcesses is the most stream programs seen at once (sampled
	// every 100 ms); MostLive of them had run 2 s or more (live streams:
	// a poll's program answers and exits).
	MostProcesses int    `json:"most_stream_processes"`
	MostLive      int    `json:"most_live_stream_processes"`
	Error         string `json:"error,omitempty"`
}

// benchBudget deploys s (mod_cgid) with CHAT_MAX_STREAMS set to the
// budget, and for each reader count opens that many readers and measures
// delivery, CPU and the stream programs running at once.
func benchBudget(ctx context.Context, rt *runner, cfg config, _ fileLimit, s hostkit.Setup, res *setupResult) {
	most := slices.Max(cfg.BudgetReaders)
	h := hostkit.NewHost(rt, s)
	h.Env = append(slices.DeleteFunc(slices.Concat(benchEnv, cfg.Env), func(kv string) bool {
		return strings.HasPrefix(kv, "CHAT_MAX_STREAMS=")
	}), fmt.Sprintf("CHAT_MAX_STREAMS=%d", cfg.Budget))
	res.StreamMode = "live, polls past the budget"
	h.ApacheConf, h.NginxWorkerConnections, res.Raised = serverLimits(s, most, cfg.Posters)
	fmt.Fprintf(os.Stderr, "bench: %s: deploying\n", res.Short)
	h.Deploy(rt)
	h.Start(rt)
	lg := startLoad(rt, h.URL)
	roots := serverRoots(h)
	// The host's processes go into a control group of their own, which
	// counts the CGI programs mod_cgid starts (its daemon waits for none
	// of them, so /proc's totals lose them); without one, /proc's totals.
	group, err := newCPUGroup(fmt.Sprintf("cgichat-bench-%d", os.Getpid()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %s: the CPU is counted from /proc, without the CGI programs that exited: %v\n", res.Short, err)
	} else {
		rt.Cleanup(func() {
			if err := group.remove(); err != nil {
				fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			}
		})
	}
	for i, n := range cfg.BudgetReaders {
		if ctx.Err() != nil {
			rt.Fatalf("interrupted")
		}
		if i > 0 {
			drain(ctx, rt, h)
		}
		run := &budgetRun{Readers: n, Budget: cfg.Budget}
		res.Budget = append(res.Budget, run)
		fmt.Fprintf(os.Stderr, "bench: %s: %d readers, budget %d\n", res.Short, n, cfg.Budget)
		room := hostkit.NewRoom("budget")
		// The readers join a room that has a history, as a room people
		// read has: a poll of a room without rows names no tail.
		if rep := lg.call(ctx, rt, request{Op: "fill", Room: room, Posts: budgetHistory, Posters: 1, TextLen: 40}); rep.Error != "" || rep.Fill.Errors > 0 {
			run.Error = "fill: " + cmp.Or(rep.Error, rep.Fill.ErrorSample)
			continue
		}
		if rep := lg.call(ctx, rt, request{Op: "open", Room: room, Streams: n, WaitReady: true}); rep.Error != "" {
			run.Error = rep.Error
			lg.call(ctx, rt, request{Op: "close"})
			continue
		}
		// Readers that all came at once poll slowly at first (their polls
		// ran together and took long); what is measured is the room once
		// each has polled again at its own pace, over a time that holds a
		// few of the longest intervals.
		settle, measure := seconds(cfg.SettleSeconds), seconds(cfg.LatencySeconds)
		if !cfg.Quick {
			settle, measure = max(settle, budgetSettle), max(measure, budgetMeasure)
		}
		time.Sleep(settle)
		all := hostkit.Sample(rt, h.StreamProcesses)
		live := hostkit.Sample(rt, func() int { return hostkit.OlderThan(hostkit.PIDsRunning(h.StreamBin), 2*time.Second) })
		programs := []string{comm(h.StreamBin), comm(h.PostBin)}
		cpu := func() (all, server time.Duration) {
			all, server = cpuTotal(roots(), programs...)
			if group != nil {
				if used, err := group.usage(); err == nil {
					all = used
				}
			}
			return all, server
		}
		run.CPUCounted = "/proc"
		if group != nil {
			run.CPUCounted = "cgroup"
			if err := group.add(family(allStats(), roots())); err != nil {
				rt.Fatalf("%v", err)
			}
		}
		cpu0, server0 := cpu()
		at0 := time.Now()
		rep := lg.call(ctx, rt, request{Op: "latency", Room: room, Rate: cfg.Rate, Seconds: measure.Seconds(), Poll: true})
		cpu1, server1 := cpu()
		run.CPUPercent = (cpu1 - cpu0).Seconds() / time.Since(at0).Seconds() * 100
		run.ServerCPUPercent = (server1 - server0).Seconds() / time.Since(at0).Seconds() * 100
		run.Latency = rep.Latency
		if rep.Error != "" {
			run.Error = rep.Error
		}
		run.MostProcesses, _ = all.Stop()
		run.MostLive, _ = live.Stop()
		lg.call(ctx, rt, request{Op: "close"})
	}
	drain(ctx, rt, h)
}

// hold prints where the host is and waits for ctx to end (Ctrl-C), so
// that it can be loaded and profiled by hand.
func hold(ctx context.Context, h *hostkit.Host) {
	fmt.Fprintf(os.Stderr, "bench: %s is at %s (database %s); load it with\n  %s=%s %s=%s <bench binary>  (JSON requests on stdin)\n",
		h.Setup.Name, h.URL, h.DB, roleEnv, roleLoad, urlEnv, h.URL)
	for _, p := range h.Procs() {
		fmt.Fprintf(os.Stderr, "bench: %s: pid %d\n", p.Name, p.Pid())
	}
	fmt.Fprintln(os.Stderr, "bench: Ctrl-C stops it")
	<-ctx.Done()
}

// openStreams opens n streams of room and returns once the host serves
// them all: each sent its ready event (live), or, where the host holds
// responses back (batch), n stream requests are being served.
func openStreams(ctx context.Context, rt *runner, h *hostkit.Host, lg *loadProc, room string, n int) error {
	before := h.Connections(rt)
	rep := lg.call(ctx, rt, request{Op: "open", Room: room, Streams: n, WaitReady: !h.Setup.Batch})
	if rep.Error != "" {
		return errors.New(rep.Error)
	}
	if !h.Setup.Batch {
		return nil
	}
	deadline := time.Now().Add(servingWait)
	for ctx.Err() == nil {
		got := serving(rt, h, room, before)
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d streams served after %v", got, n, servingWait)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return ctx.Err()
}

// serving counts the stream requests of room being served: CGI processes
// for the room, or FastCGI connections not among before.
func serving(rt *runner, h *hostkit.Host, room string, before map[string]bool) int {
	if h.Setup.CGI {
		n := 0
		for _, pid := range hostkit.PIDsRunning(h.StreamBin) {
			if hostkit.HasEnv(pid, "QUERY_STRING=room="+room) {
				n++
			}
		}
		return n
	}
	n := 0
	for inode := range h.Connections(rt) {
		if !before[inode] {
			n++
		}
	}
	return n
}

// busy counts every stream request being served.
func busy(rt *runner, h *hostkit.Host) int {
	if h.Setup.CGI {
		return len(hostkit.PIDsRunning(h.StreamBin))
	}
	return len(h.Connections(rt))
}

// drain waits until the host has freed every stream the load generator
// closed (a CGI stream notices at its next heartbeat, a batch one at the
// end of its long poll); it returns how long that took, at most drainWait.
func drain(ctx context.Context, rt *runner, h *hostkit.Host) float64 {
	began := time.Now()
	for busy(rt, h) > 0 && time.Since(began) < drainWait && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(began).Seconds()
}

// serverLimits returns what the bench adds to the servers' configuration
// so that they admit streams streams and posters posters at once, and
// lines saying so for the report.
func serverLimits(s hostkit.Setup, streams, posters int) (apache string, nginxConns int, raised []string) {
	need := streams + posters + 64
	if strings.HasPrefix(s.Name, "nginx") {
		// A stream holds a client and an upstream connection; the two
		// workers may not share them evenly.
		nginxConns = max(1024, 2*need)
		raised = append(raised, fmt.Sprintf("nginx worker_connections %d (the host tests use 256)", nginxConns))
		return "", nginxConns, raised
	}
	// Event MPM: a stream holds a worker thread. Debian's defaults admit
	// 400 (16 × 25).
	const threads = 25
	servers := max(16, (need+threads-1)/threads)
	apache = fmt.Sprintf("\n# bench: room for %d streams and %d posters\nServerLimit %d\nThreadsPerChild %d\nMaxRequestWorkers %d\n",
		streams, posters, servers, threads, servers*threads)
	raised = append(raised, fmt.Sprintf("ServerLimit %d, ThreadsPerChild %d, MaxRequestWorkers %d (default 16, 25, 400)", servers, threads, servers*threads))
	if strings.Contains(s.Name, "fcgid") {
		// mod_fcgid: one process per request in flight; by default at
		// most 100 per program and 1000 in all, and it spawns few at a
		// time (a score that falls by one a second and may reach 10).
		perClass := streams + posters + 16
		apache += fmt.Sprintf("FcgidMaxProcessesPerClass %d\nFcgidMaxProcesses %d\nFcgidSpawnScoreUpLimit %d\n",
			perClass, 2*perClass, 2*perClass)
		raised = append(raised, fmt.Sprintf("FcgidMaxProcessesPerClass %d, FcgidMaxProcesses %d, FcgidSpawnScoreUpLimit %d (default 100, 1000, 10)",
			perClass, 2*perClass, 2*perClass))
	}
	return apache, 0, raised
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// loadProc is the load generator: this program again, in the load role.
type loadProc struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	replies chan string // one line per reply; closed when it exits
}

// startLoad starts the load generator against base and stops it when rt's
// cleanups run.
func startLoad(rt *runner, base string) *loadProc {
	exe, err := os.Executable()
	if err != nil {
		rt.Fatalf("load generator: %v", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), roleEnv+"="+roleLoad, urlEnv+"="+base)
	cmd.Stderr = os.Stderr
	// If the orchestrator dies, so does the load generator.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		rt.Fatalf("load generator: %v", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		rt.Fatalf("load generator: %v", err)
	}
	if err := cmd.Start(); err != nil {
		rt.Fatalf("load generator: %v", err)
	}
	lp := &loadProc{cmd: cmd, in: in, replies: make(chan string)}
	go func() {
		defer close(lp.replies)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), replyMaxSize)
		for sc.Scan() {
			lp.replies <- sc.Text()
		}
	}()
	rt.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() {
			cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return lp
}

// call sends req and returns the reply; a load generator that dies, hangs
// or is interrupted fails the setup.
func (lp *loadProc) call(ctx context.Context, rt *runner, req request) reply {
	b, _ := json.Marshal(req)
	if _, err := lp.in.Write(append(b, '\n')); err != nil {
		rt.Fatalf("load generator: %v", err)
	}
	timeout := time.NewTimer(callTimeout)
	defer timeout.Stop()
	select {
	case line, ok := <-lp.replies:
		if !ok {
			rt.Fatalf("load generator exited during %s", req.Op)
		}
		var rep reply
		if err := json.Unmarshal([]byte(line), &rep); err != nil {
			rt.Fatalf("load generator: reply %.200q: %v", line, err)
		}
		return rep
	case <-ctx.Done():
		lp.cmd.Process.Kill()
		rt.Fatalf("interrupted during %s", req.Op)
	case <-timeout.C:
		lp.cmd.Process.Kill()
		rt.Fatalf("load generator: no reply to %s within %v", req.Op, callTimeout)
	}
	return reply{}
}

// startCost is the cost of one post as a fresh process.
type startCost struct {
	Runs        int     `json:"runs"`
	WallP50     float64 `json:"wall_p50_ms"`
	WallMax     float64 `json:"wall_max_ms"`
	MaxRSSP50   float64 `json:"peak_rss_p50_mb"`
	MaxRSSMax   float64 `json:"peak_rss_max_mb"`
	Errors      int     `json:"errors"`
	ErrorSample string  `json:"error_sample,omitempty"`
}

// measureStartCost runs the deployed post program runs times as a CGI
// program, as the web server's user, against the host's database: wall
// time from start to exit and peak RSS (getrusage's ru_maxrss).
func measureStartCost(ctx context.Context, h *hostkit.Host, runs int, env []string) startCost {
	sc := startCost{Runs: runs}
	var walls, rss []float64
	for i := range runs {
		if ctx.Err() != nil {
			break
		}
		body := fmt.Sprintf("room=start&nick=start%d-%d&text=hello", os.Getpid(), i)
		cmd := exec.CommandContext(ctx, h.PostBin)
		cmd.Dir = filepath.Dir(h.PostBin)
		cmd.Env = append([]string{
			"PATH=/usr/bin:/bin", "GATEWAY_INTERFACE=CGI/1.1", "SERVER_PROTOCOL=HTTP/1.1",
			"REQUEST_METHOD=POST", "SCRIPT_NAME=/cgi-bin/post", "REQUEST_URI=/cgi-bin/post",
			"SERVER_NAME=127.0.0.1", fmt.Sprintf("SERVER_PORT=%d", h.Port), "HTTP_HOST=" + h.Addr(),
			"REMOTE_ADDR=127.0.0.1", "REMOTE_PORT=40000",
			"CONTENT_TYPE=application/x-www-form-urlencoded", fmt.Sprintf("CONTENT_LENGTH=%d", len(body)),
			"CHAT_DB=" + h.DB,
		}, slices.Concat(benchEnv, env)...)
		cmd.Stdin = strings.NewReader(body)
		h.User.RunAs(cmd)
		began := time.Now()
		out, err := cmd.Output()
		wall := time.Since(began)
		if err == nil && !strings.HasPrefix(string(out), "Status: 201") {
			err = fmt.Errorf("answered %.80q", out)
		}
		if err != nil {
			sc.Errors++
			sc.ErrorSample = err.Error()
			continue
		}
		walls = append(walls, wall.Seconds()*1000)
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			rss = append(rss, float64(ru.Maxrss)/1024) // KiB on Linux
		}
	}
	sc.WallP50, _, _, sc.WallMax = percentiles(walls)
	sc.MaxRSSP50, _, _, sc.MaxRSSMax = percentiles(rss)
	return sc
}

// cpuSince returns what each process name used between two cpuByName
// readings (processes that ended meanwhile are left out).
func cpuSince(before, after map[string]float64) map[string]float64 {
	out := make(map[string]float64)
	for name, v := range after {
		if d := v - before[name]; d > 0 {
			out[name] = d
		}
	}
	return out
}
