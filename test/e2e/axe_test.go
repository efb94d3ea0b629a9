package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// axe-core (Deque's accessibility rules) checks the page in the tests. Its
// version is pinned, with its checksum, in test/e2e/axe/package-lock.json;
// test/run installs it with npm into .local/axe (git-ignored), and so does
// TestMain when it is missing there.
var axeSource string

// axeDir is where the pinned axe-core is installed, below the repository.
const axeDir = ".local/axe"

// loadAxe reads axe-core's script, installing it first if the installed
// version is not the pinned one.
func loadAxe() error {
	var lock struct {
		Packages map[string]struct{ Version string } `json:"packages"`
	}
	b, err := os.ReadFile(filepath.Join(repoRoot, "test", "e2e", "axe", "package-lock.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &lock); err != nil {
		return fmt.Errorf("test/e2e/axe/package-lock.json: %w", err)
	}
	want := lock.Packages["node_modules/axe-core"].Version
	dir := filepath.Join(repoRoot, axeDir)
	installed := func() string {
		var pkg struct{ Version string }
		b, err := os.ReadFile(filepath.Join(dir, "node_modules", "axe-core", "package.json"))
		if err == nil {
			json.Unmarshal(b, &pkg)
		}
		return pkg.Version
	}
	if installed() != want {
		if err := installAxe(dir); err != nil {
			return fmt.Errorf("install axe-core %s into %s (test/run does it; it needs npm): %w", want, axeDir, err)
		}
		if got := installed(); got != want {
			return fmt.Errorf("installed axe-core %q into %s, want %s", got, axeDir, want)
		}
	}
	b, err = os.ReadFile(filepath.Join(dir, "node_modules", "axe-core", "axe.min.js"))
	axeSource = string(b)
	return err
}

// installAxe installs the pinned packages of test/e2e/axe into dir, as
// test/run does.
func installAxe(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, "test", "e2e", "axe", f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			return err
		}
	}
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// axeViolation is one rule that some nodes of the page break.
type axeViolation struct {
	ID     string
	Impact string
	Help   string
	Nodes  []struct {
		Target  []any
		Summary string `json:"failureSummary"`
	}
}

// axe runs axe-core on what the tab shows now and fails the test for each
// serious or critical violation; what shows the page (a dialog, a state)
// names the check in the failure.
func (tb *tab) axe(what string) {
	tb.t.Helper()
	if !eval[bool](tb, `typeof window.axe === "object"`) {
		eval[bool](tb, axeSource+"\n;true")
	}
	got := eval[[]axeViolation](tb, `axe.run(document, { resultTypes: ["violations"] }).then((r) => r.violations)`)
	for _, v := range got {
		if v.Impact != "serious" && v.Impact != "critical" {
			continue
		}
		var nodes []string
		for _, n := range v.Nodes {
			nodes = append(nodes, fmt.Sprint(n.Target)+": "+strings.ReplaceAll(n.Summary, "\n", " "))
		}
		tb.t.Errorf("%s: axe, %s: %s (%s), %d nodes:\n\t%s", tb.name, what, v.ID, v.Impact, len(v.Nodes), strings.Join(nodes, "\n\t"))
	}
}
