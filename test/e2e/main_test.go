// Package e2e tests the chat page in a real browser: Debian's Chromium,
// headless, driven over the DevTools protocol (chromedp), against the real
// post and stream programs on 127.0.0.1. Each test deploys its own chat (see
// deploy) and opens it as one or more people, each in a browser context of
// their own (own storage, own connections), like separate browsers.
//
// Screenshots go to test-artifacts/ at the top of the repository.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"cgichat/test/hostkit"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium; test/run installs it when missing.
const chromiumPath = "/usr/bin/chromium"

// Set once by TestMain for every test.
var (
	repoRoot string          // the top of the repository
	binDir   string          // holds the built post and stream programs
	browser  context.Context // the one Chromium all tests share
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if repoRoot, err = filepath.Abs(filepath.Join("..", "..")); err != nil {
		return fail(err)
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "public", "index.html")); err != nil {
		return fail(fmt.Errorf("the repository's public/ is not at %s: %w", repoRoot, err))
	}
	if err := loadAxe(); err != nil {
		return fail(err)
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		return fail(fmt.Errorf("these tests need Chromium at %s (test/run installs the Debian package chromium): %w", chromiumPath, err))
	}

	// The copy of the checkout that TestRealHosts deploys from.
	defer hostkit.RemoveSource()

	tmp, err := os.MkdirTemp("", "cgichat-e2e-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(tmp)
	binDir = filepath.Join(tmp, "bin")
	for _, prog := range []string{"post", "stream"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, prog), "./cgi-bin/"+prog)
		cmd.Dir = repoRoot
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fail(fmt.Errorf("build %s: %w", prog, err))
		}
	}

	ctx, stop, err := startBrowser(filepath.Join(tmp, "profile"))
	if err != nil {
		return fail(err)
	}
	defer stop()
	browser = ctx
	return m.Run()
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "e2e:", err)
	return 1
}

// startBrowser starts headless Chromium with a fresh profile. The flags keep
// it from reaching out to the network (this machine has none: every attempt
// would be a refused connection) and let it run as root in CI.
func startBrowser(profile string) (context.Context, func(), error) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(profile),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-domain-reliability", true),
		// A name for 127.0.0.1 that is not "localhost", so a page can be
		// served over plain HTTP as an insecure context (see plainHTTP).
		chromedp.Flag("host-resolver-rules", "MAP "+plainHost+" 127.0.0.1"),
		chromedp.WindowSize(1000, 700),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(allocCtx)
	stop := func() {
		cancelBrowser()
		cancelAlloc()
	}
	// The first run starts the browser and ties it to ctx, so it has no
	// deadline of its own; this bounds the wait instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("start %s: %w", chromiumPath, err)
		}
	case <-time.After(60 * time.Second):
		stop()
		return nil, nil, fmt.Errorf("start %s: no answer within 60 s", chromiumPath)
	}
	return ctx, stop, nil
}
