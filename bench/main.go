// Command bench measures cgichat behind real web servers on loopback:
// delivery latency from a post's 201 to every open stream, fan-out of one
// post, post throughput, the idle cost of open streams, and the start cost
// of a CGI post.
//
// For each setup it deploys with deploy.sh into a temporary docroot (the
// same code as test/hosts, in test/hostkit), starts the servers, and runs
// the load from a second process (this program again, in the load role)
// that talks HTTP to 127.0.0.1 only. It stops everything at the end, on a
// failure and on Ctrl-C, prints a Markdown report and writes it as JSON.
//
//	go run ./bench                       # the full run, every setup
//	go run ./bench -quick                # a few streams for a few seconds
//	go run ./bench -setups nginx-daemon -daemon-streams 1000
//
// Run it as root (as CI does) so that the servers run as www-data; it
// reads other users' /proc entries for the idle cost.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// The load role: the orchestrator starts this program again with these
// variables set.
const (
	roleEnv  = "CGICHAT_BENCH_ROLE"
	roleLoad = "load"
	urlEnv   = "CGICHAT_BENCH_URL"
)

func main() {
	if os.Getenv(roleEnv) == roleLoad {
		os.Exit(loadMain(os.Stdin, os.Stdout))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// config is every parameter of a run; the report repeats it.
type config struct {
	Setups            []string `json:"setups"`
	Streams           []int    `json:"streams"`        // per-process setups
	DaemonStreams     []int    `json:"daemon_streams"` // daemon setups
	Rate              float64  `json:"rate"`           // posts/s while measuring latency
	LatencySeconds    float64  `json:"latency_seconds"`
	FanoutPosts       int      `json:"fanout_posts"`
	IdleSeconds       float64  `json:"idle_seconds"`
	SettleSeconds     float64  `json:"settle_seconds"` // after starting servers or opening streams, before measuring
	Posters           int      `json:"posters"`
	ThroughputStreams int      `json:"throughput_streams"`
	StepSeconds       float64  `json:"step_seconds"`
	Steps             int      `json:"steps"`
	StartRuns         int      `json:"start_runs"`
	Budget            int      `json:"budget"`         // CHAT_MAX_STREAMS of the budget setup
	BudgetReaders     []int    `json:"budget_readers"` // reader counts of the budget setup
	StallReaders      int      `json:"stall_readers"`  // readers of a room's whole backlog that never read
	StallMessages     int      `json:"stall_messages"` // in that room
	StallTextLen      int      `json:"stall_text_len"` // characters per message
	BusyReaders       int      `json:"busy_readers"`   // live readers that never read, daemon setups
	BusyRate          float64  `json:"busy_rate"`      // posts/s to their room
	StallSeconds      float64  `json:"stall_seconds"`  // how long memory is sampled
	Quick             bool     `json:"quick"`
	Env               []string `json:"env,omitempty"` // settings beyond the bench's own (-env)
	JSON              string   `json:"-"`
	Hold              bool     `json:"-"`
}

// setupNames maps the bench's short names to hostkit's setups.
var setupNames = map[string]string{
	"apache-cgid":         "apache-mod_cgid",
	"apache-fcgid":        "apache-mod_fcgid",
	"apache-fcgid-live":   "apache-mod_fcgid-unbuffered",
	"apache-proxy-daemon": "apache-mod_proxy_fcgi-daemon",
	"nginx-daemon":        "nginx-daemon",
	"nginx-fcgiwrap":      "nginx-fcgiwrap",
	"apache-cgid-budget":  "apache-mod_cgid",
}

const usageText = `Usage: go run ./bench [flags]

Deploys cgichat with deploy.sh into a temporary docroot for each setup,
starts the real servers on 127.0.0.1, measures from a second process and
stops everything. Prints a Markdown report; writes JSON (-json).

Setups: apache-cgid, apache-fcgid (batch streams, as deploy.sh deploys
it), apache-fcgid-live (FcgidOutputBufferSize 0), nginx-daemon,
apache-proxy-daemon, nginx-fcgiwrap, and apache-cgid-budget (mod_cgid
with a budget of live streams, CHAT_MAX_STREAMS, and many readers, most
of them polling).

Flags:
`

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
	}
	setups := fs.String("setups", "apache-cgid,apache-fcgid,apache-fcgid-live,nginx-daemon,apache-cgid-budget", "comma-separated setups to measure")
	streams := fs.String("streams", "10,200", "stream counts for per-process setups (CGI, mod_fcgid, fcgiwrap)")
	daemonStreams := fs.String("daemon-streams", "10,200,1000,10000", "stream counts for daemon setups")
	budgetReaders := fs.String("budget-readers", "200,1000", "reader counts for the budget setup")
	c := config{}
	fs.Float64Var(&c.Rate, "rate", 5, "posts per second while measuring latency")
	fs.Float64Var(&c.LatencySeconds, "latency-seconds", 10, "how long to post while measuring latency")
	fs.IntVar(&c.FanoutPosts, "fanout-posts", 5, "single posts whose fan-out is measured")
	fs.Float64Var(&c.IdleSeconds, "idle-seconds", 30, "how long open streams stay idle while their cost is measured")
	fs.Float64Var(&c.SettleSeconds, "settle-seconds", 2, "pause after starting the servers or opening streams, before measuring")
	fs.IntVar(&c.Posters, "posters", 8, "concurrent posters in the throughput search")
	fs.IntVar(&c.ThroughputStreams, "throughput-streams", 10, "streams reading the room during the throughput search")
	fs.Float64Var(&c.StepSeconds, "step-seconds", 5, "length of each throughput step")
	fs.IntVar(&c.Steps, "steps", 6, "throughput steps after the closed-loop probe (at most 12)")
	fs.IntVar(&c.StartRuns, "start-runs", 20, "fresh post processes timed for the CGI start cost")
	fs.IntVar(&c.Budget, "budget", 10, "CHAT_MAX_STREAMS of the budget setup")
	fs.IntVar(&c.StallReaders, "stall-readers", 50, "readers asking a room's whole backlog (lastEventId=0) that never read; 0 skips it")
	fs.IntVar(&c.StallMessages, "stall-messages", 1000, "messages in their room")
	fs.IntVar(&c.StallTextLen, "stall-text", 2000, "characters per message in that room, all '<' (the JSON grows with them)")
	fs.IntVar(&c.BusyReaders, "busy-readers", 200, "live readers that never read, in a room posted to meanwhile (daemon setups); 0 skips it")
	fs.Float64Var(&c.BusyRate, "busy-rate", 20, "posts per second to the busy room")
	fs.Float64Var(&c.StallSeconds, "stall-seconds", 10, "how long the stalled readers' memory is sampled")
	fs.BoolVar(&c.Quick, "quick", false, "a tiny run for CI: apache-cgid, apache-fcgid and nginx-daemon, 3 streams, a few seconds each")
	fs.BoolVar(&c.Hold, "hold", false, "deploy and start the first setup, print its URL and process ids, and wait for Ctrl-C (for profiling by hand)")
	fs.Func("env", "a setting NAME=value for every deployment, after the bench's own (repeatable), to measure another value", func(v string) error {
		if name, _, ok := strings.Cut(v, "="); !ok || !strings.HasPrefix(name, "CHAT_") {
			return fmt.Errorf("%q is not CHAT_NAME=value", v)
		}
		c.Env = append(c.Env, v)
		return nil
	})
	fs.StringVar(&c.JSON, "json", "", "write the report as JSON here (default .local/bench/bench-TIME.json)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if c.Streams, err = parseCounts(*streams); err != nil {
		return c, fmt.Errorf("-streams: %w", err)
	}
	if c.DaemonStreams, err = parseCounts(*daemonStreams); err != nil {
		return c, fmt.Errorf("-daemon-streams: %w", err)
	}
	if c.BudgetReaders, err = parseCounts(*budgetReaders); err != nil {
		return c, fmt.Errorf("-budget-readers: %w", err)
	}
	for _, name := range strings.Split(*setups, ",") {
		name = strings.TrimSpace(name)
		if _, ok := setupNames[name]; !ok {
			return c, fmt.Errorf("-setups: unknown setup %q", name)
		}
		c.Setups = append(c.Setups, name)
	}
	if c.Quick {
		c.Setups = []string{"apache-cgid", "apache-fcgid", "nginx-daemon", "apache-cgid-budget"}
		c.Streams, c.DaemonStreams, c.Budget, c.BudgetReaders = []int{3}, []int{3}, 1, []int{3}
		c.LatencySeconds, c.FanoutPosts, c.IdleSeconds, c.SettleSeconds = 1.5, 2, 1, 0.5
		c.ThroughputStreams, c.Posters, c.StepSeconds, c.Steps = 2, 2, 1, 1
		c.StartRuns = 3
		c.StallReaders, c.StallMessages, c.BusyReaders, c.BusyRate, c.StallSeconds = 3, 200, 3, 5, 1.5
	}
	switch {
	case c.Rate <= 0 || c.Rate > 1000:
		return c, fmt.Errorf("-rate must be above 0 and at most 1000")
	case c.LatencySeconds <= 0 || c.LatencySeconds > 600, c.IdleSeconds <= 0 || c.IdleSeconds > 600, c.StepSeconds <= 0 || c.StepSeconds > 600,
		c.SettleSeconds < 0 || c.SettleSeconds > 600:
		return c, fmt.Errorf("durations must be above 0 and at most 600 s")
	case c.FanoutPosts < 1 || c.FanoutPosts > 1000, c.StartRuns < 1 || c.StartRuns > 1000:
		return c, fmt.Errorf("-fanout-posts and -start-runs must be 1 to 1000")
	case c.Posters < 1 || c.Posters > maxPosters, c.Steps < 0 || c.Steps > maxSteps:
		return c, fmt.Errorf("-posters must be 1 to %d, -steps 0 to %d", maxPosters, maxSteps)
	case c.ThroughputStreams < 0 || c.ThroughputStreams > maxStreams:
		return c, fmt.Errorf("-throughput-streams must be 0 to %d", maxStreams)
	case c.Budget < 1 || c.Budget > 1000:
		return c, fmt.Errorf("-budget must be 1 to 1000")
	case c.StallReaders < 0 || c.StallReaders > maxStreams, c.BusyReaders < 0 || c.BusyReaders > maxStreams:
		return c, fmt.Errorf("-stall-readers and -busy-readers must be 0 to %d", maxStreams)
	case c.StallMessages < 1 || c.StallMessages > maxPostsPerStep, c.StallTextLen < 1 || c.StallTextLen > 2000:
		return c, fmt.Errorf("-stall-messages must be 1 to %d, -stall-text 1 to 2000", maxPostsPerStep)
	case c.BusyRate <= 0 || c.BusyRate > 1000, c.StallSeconds <= 0 || c.StallSeconds > 600:
		return c, fmt.Errorf("-busy-rate must be above 0 and at most 1000, -stall-seconds above 0 and at most 600")
	}
	if c.JSON == "" {
		c.JSON = ".local/bench/bench-" + time.Now().UTC().Format("20060102-150405") + ".json"
	}
	return c, nil
}

// parseCounts reads "10,200" as stream counts.
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > maxStreams {
			return nil, fmt.Errorf("%q is not a stream count from 1 to %d", f, maxStreams)
		}
		out = append(out, n)
	}
	return out, nil
}
