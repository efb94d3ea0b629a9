package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cgichat/test/hostkit"
)

// TestMain lets the test binary be the load generator too: the command
// starts its own executable again in that role.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == roleLoad {
		os.Exit(loadMain(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// TestQuick runs the command in its tiny configuration (three setups, three
// streams, a few seconds each) and checks that it measured everything and
// wrote a well-formed report. It checks no timing: the targets are checked
// by running the command.
func TestQuick(t *testing.T) {
	hostkit.RequireTools(t, hostkit.ApacheBin, hostkit.NginxBin, hostkit.FcgiwrapBin)
	jsonPath := filepath.Join(t.TempDir(), "bench.json")
	var out, errs bytes.Buffer
	if code := run([]string{"-quick", "-json", jsonPath}, &out, &errs); code != 0 {
		t.Fatalf("bench -quick exited with %d\nstdout:\n%s\nstderr:\n%s", code, &out, &errs)
	}

	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("the JSON report does not parse: %v\n%s", err, b)
	}
	m := rep.Machine
	if m.Cores < 1 || m.CPU == "" || m.Kernel == "" || !strings.HasPrefix(m.Go, "go") ||
		!strings.Contains(m.Apache, "Apache/") || !strings.Contains(m.Nginx, "nginx/") || m.SQLite == "" {
		t.Errorf("the machine is not fully described: %+v", m)
	}
	if !rep.Config.Quick || len(rep.Config.Streams) == 0 {
		t.Errorf("the parameters are not recorded: %+v", rep.Config)
	}
	want := []string{"apache-cgid", "apache-fcgid", "nginx-daemon", budgetSetup}
	if len(rep.Setups) != len(want) {
		t.Fatalf("got %d setups, want %v", len(rep.Setups), want)
	}
	for i, s := range rep.Setups {
		if s.Short != want[i] {
			t.Errorf("setup %d is %s, want %s", i, s.Short, want[i])
		}
		if s.Short == budgetSetup {
			checkBudget(t, s)
		} else {
			checkSetup(t, s)
		}
	}
	if len(rep.Targets) == 0 {
		t.Error("no target was checked")
	}

	md := out.String()
	for _, heading := range []string{"## cgichat benchmark", "### Delivery latency and fan-out", "### Post throughput", "### CPU per delivery", "### Idle cost", "### A budget of live streams", "### Stalled readers", "### CGI start cost", "### Targets"} {
		if !strings.Contains(md, "\n"+heading) && !strings.HasPrefix(md, heading) {
			t.Errorf("the Markdown report has no %q section", heading)
		}
	}
	for _, s := range []string{"| apache-cgid | live | 3 |", "| apache-fcgid | batch | 3 |", "| nginx-daemon | live | 3 |"} {
		if !strings.Contains(md, s) {
			t.Errorf("the latency table has no row starting %q:\n%s", s, md)
		}
	}
	// Every table row has as many cells as its header.
	var cells int
	for _, line := range strings.Split(md, "\n") {
		switch {
		case !strings.HasPrefix(line, "|"):
			cells = 0
		case cells == 0:
			cells = strings.Count(line, "|")
		case strings.Count(line, "|") != cells:
			t.Errorf("a table row has %d separators, its header %d: %s", strings.Count(line, "|"), cells, line)
		}
	}
}

// checkBudget checks that the budget setup measured its one reader count:
// every post reached every reader, live or polling, and stream programs
// ran.
func checkBudget(t *testing.T, s *setupResult) {
	t.Helper()
	if s.Error != "" {
		t.Errorf("%s failed: %s", s.Short, s.Error)
		return
	}
	if len(s.Budget) != 1 {
		t.Fatalf("%s: %d runs, want 1", s.Short, len(s.Budget))
	}
	r := s.Budget[0]
	if l := r.Latency; r.Error != "" || l == nil || l.Posts == 0 || l.PostErrors != 0 || l.Lost != 0 || l.Samples != l.Posts*r.Readers {
		t.Errorf("%s: every post must reach every reader: %+v, %s", s.Short, l, r.Error)
	}
	// CPU is counted in clock ticks (10 ms), and a quick run's few CGI
	// programs may all be reaped after it: only a value that cannot be is
	// wrong.
	if r.MostProcesses < 1 || r.CPUPercent < 0 || math.IsNaN(r.CPUPercent) || r.ServerCPUPercent < 0 || r.ServerCPUPercent > r.CPUPercent {
		t.Errorf("%s: no stream program seen, or no CPU figure: %+v", s.Short, r)
	}
}

// checkSetup checks that one setup's results are complete and consistent.
func checkSetup(t *testing.T, s *setupResult) {
	t.Helper()
	if s.Error != "" {
		t.Errorf("%s failed: %s", s.Setup, s.Error)
		return
	}
	if s.Baseline == nil || s.Baseline.Processes == 0 || s.Baseline.RSSBytes == 0 {
		t.Errorf("%s: no idle baseline of the servers: %+v", s.Setup, s.Baseline)
	}
	if len(s.Runs) != 1 {
		t.Fatalf("%s: %d runs, want 1", s.Setup, len(s.Runs))
	}
	r := s.Runs[0]
	if r.Error != "" {
		t.Errorf("%s: %d streams: %s", s.Setup, r.Streams, r.Error)
	}
	if r.Idle == nil || r.Idle.Processes <= s.Baseline.Processes && !strings.Contains(s.Setup, "daemon") {
		t.Errorf("%s: the idle measurement found no stream process: %+v", s.Setup, r.Idle)
	}
	if l := r.Latency; l == nil || l.Posts == 0 || l.PostErrors != 0 || l.Lost != 0 || l.Samples != l.Posts*r.Streams {
		t.Errorf("%s: every post must reach every stream: %+v", s.Setup, l)
	}
	// A quick run delivers a few dozen events, far less than the 10 ms
	// clock tick CPU time is counted in, so a program's share may be
	// none; the load generator, which also posts, always has some.
	if r.LatencyCPU == nil || r.Latency != nil && r.Latency.LoadCPUSeconds <= 0 {
		t.Errorf("%s: no CPU figures, or none for the load generator, during the latency run: %v, %+v", s.Setup, r.LatencyCPU, r.Latency)
	}
	if f := r.Fanout; f == nil || f.Lost != 0 || len(f.Times) != f.Posts || f.Posts == 0 {
		t.Errorf("%s: fan-out incomplete: %+v", s.Setup, f)
	}
	if tp := s.Throughput; tp == nil || tp.Probe.OK == 0 || len(tp.Steps) == 0 {
		t.Errorf("%s: no throughput measured: %+v", s.Setup, tp)
	}
	if sc := s.StartCost; sc == nil || sc.Errors != 0 || sc.MaxRSSP50 == 0 {
		t.Errorf("%s: no CGI start cost: %+v", s.Setup, sc)
	}
	kinds := []string{"backlog"}
	if strings.Contains(s.Setup, "daemon") {
		kinds = append(kinds, "busy")
	}
	if len(s.Stalled) != len(kinds) {
		t.Fatalf("%s: %d stalled-reader runs, want %v", s.Setup, len(s.Stalled), kinds)
	}
	for i, r := range s.Stalled {
		// A batch response ends after the backlog, which the web server
		// may take whole before a sample sees it served.
		if r.Kind != kinds[i] || r.Error != "" || r.Served != r.Readers && s.StreamMode != "batch" || r.Peak == 0 || r.Process == 0 || r.Server == 0 {
			t.Errorf("%s: stalled readers (%s) not measured: %+v", s.Setup, kinds[i], r)
		}
		if r.Kind == "busy" && (r.Messages == 0 || r.PostErrs != 0) {
			t.Errorf("%s: nothing posted to the busy room: %+v", s.Setup, r)
		}
	}
}
