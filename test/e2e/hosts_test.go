package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cgichat/test/hostkit"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// The page on real web servers (test/hostkit: deploy.sh into a temporary
// docroot, Apache or nginx on 127.0.0.1): one stream per reader behind
// mod_fcgid's buffer (issue 12), and what the page says when the host
// answers instead of the chat (issue 19).

// startHost deploys cgichat as the hostkit setup called name (with
// deploy.sh's extra options) and starts its servers.
func startHost(t *testing.T, name string, extra ...string) *hostkit.Host {
	t.Helper()
	s, ok := hostkit.LookupSetup(name)
	if !ok {
		t.Fatalf("hostkit has no setup %q", name)
	}
	h := hostkit.NewHost(t, s)
	h.Deploy(t, extra...)
	start := time.Now()
	h.Start(t)
	t.Logf("%s: started in %s", name, time.Since(start).Round(time.Millisecond))
	return h
}

// TestRealHosts runs the page against real servers, each subtest on a host
// of its own, side by side.
func TestRealHosts(t *testing.T) {
	// Mostly waiting for servers and a minute of reloads: runs beside the
	// other parallel tests.
	t.Parallel()
	hostkit.RequireTools(t, hostkit.ApacheBin, hostkit.NginxBin, hostkit.ModSecurityModule, hostkit.ModSecurityConf, hostkit.ModSecurityCRSLoad)
	hostkit.WarmBuild(t)
	t.Run("reloads behind mod_fcgid's buffer", func(t *testing.T) {
		t.Parallel()
		testReloads(t)
	})
	t.Run("ModSecurity, and CloudLinux's limit", func(t *testing.T) {
		t.Parallel()
		testFirewall(t)
	})
	t.Run("no Options in .htaccess", func(t *testing.T) {
		t.Parallel()
		h := startHost(t, "apache-mod_cgid-no-options")
		testHostRefuses(t, h.URL+"/#options", 500,
			"The web host did not run the chat's program (it may not allow programs in this folder). The site owner can fix this — see "+helpName+".", false)
	})
	t.Run("nginx, the daemons stopped", func(t *testing.T) {
		t.Parallel()
		h := startHost(t, "nginx-daemon")
		for _, p := range h.Procs() {
			if strings.HasPrefix(p.Name, "cgichat@") {
				p.Stop()
			}
		}
		testHostRefuses(t, h.URL+"/#down", 502,
			"The chat's programs are not answering on this web server (they may be stopped). The site owner can fix this — see "+helpName+".", true)
	})
}

// helpName is how the page names the troubleshooting guide (answers.js).
const helpName = "cgichat's troubleshooting guide (docs/troubleshooting.md)"

// statuses records the HTTP statuses of a tab's answers to stream
// requests, as the browser received them.
type statuses struct {
	mu sync.Mutex
	n  map[int64]int
}

// watchStreams starts recording the statuses of tb's stream answers.
func watchStreams(tb *tab) *statuses {
	s := &statuses{n: map[int64]int{}}
	events := chromedp.Events(tb.ctx, network.ResponseReceived)
	go func() {
		for ev, err := range events {
			if err != nil {
				return
			}
			if ev.Response != nil && strings.Contains(ev.Response.URL, "/cgi-bin/stream?") {
				s.mu.Lock()
				s.n[ev.Response.Status]++
				s.mu.Unlock()
			}
		}
	}()
	return s
}

func (s *statuses) counts() map[int64]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int64]int{}
	for k, v := range s.n {
		out[k] = v
	}
	return out
}

// testReloads: behind Apache mod_fcgid with its default output buffer,
// which holds a live stream back until it ends, with the chat deployed to
// stream live (no batch default on the server's side) and the page made to
// forget that this host buffers before every load: one browser reloads
// the page 30 times in 60 s. Each load opens a live stream that the host
// holds back, and after 2 s of silence a batch one; every one of them
// carries the tab's reader id, so each supersedes the ones before. No
// stream is refused (429), and sampled every 100 ms the streams table
// never holds more than 2 open streams of that reader. The page still
// works at the end.
func testReloads(t *testing.T) {
	h := startHost(t, "apache-mod_fcgid", "--stream-mode", "live")
	const room = "reloads"
	// A batch response with nothing to send waits for the next message
	// (up to 25 s), and the host holds it back till then: the room has a
	// message, so that each load shows it at once.
	poster := onHost(h)
	first := poster.post(t, room, "zed", "before the reloads")
	tb := newPerson(t, "reader").openTab()
	seen := watchStreams(tb)
	forget := chromedp.Evaluate[chromedp.Void](`for (const k of Object.keys(localStorage)) { if (k.startsWith("cgichat.buffers ")) localStorage.removeItem(k); }`)
	tb.do("load the page", chromedp.Navigate(h.URL+"/#"+room))
	tb.waitLive()
	if got := eval[string](tb, `document.querySelector("#state").dataset.mode`); got != "batch" {
		t.Fatalf("behind mod_fcgid's buffer the page is in mode %q, want batch after the fallback", got)
	}

	rows := sampleReaderRows(t, h)
	procs := hostkit.Sample(t, h.StreamProcesses)
	const reloads, every = 30, 2 * time.Second
	start := time.Now()
	for i := range reloads {
		time.Sleep(time.Until(start.Add(time.Duration(i) * every)))
		tb.do(fmt.Sprintf("reload %d", i+1), forget, chromedp.Reload())
	}
	time.Sleep(time.Until(start.Add(reloads * every)))
	tb.waitLive()
	m := poster.post(t, room, "zed", "after the reloads")
	tb.waitFor("the message posted after the reloads", fmt.Sprintf(`document.querySelector('#log .msg[data-id="%d"]') !== null`, m.ID), waitTimeout)
	checkLog(t, tb, []line{{first.Nick, first.Text}, {m.Nick, m.Text}})
	// The streams left behind by the last loads end meanwhile.
	time.Sleep(3 * time.Second)
	most, readers, samples := rows.stop()
	mostProcs, _ := procs.Stop()

	got := seen.counts()
	t.Logf("%d reloads in %s: stream answers by status %v; %d samples of the streams table, at most %d open streams of one reader, readers seen %v; at most %d stream processes (busy or idle)",
		reloads, time.Since(start).Round(time.Second), got, samples, most, readers, mostProcs)
	if got[429] > 0 {
		t.Errorf("%d stream requests were refused with 429, want none", got[429])
	}
	if samples < 300 {
		t.Errorf("only %d samples of the streams table, want one every 100 ms", samples)
	}
	if most > 2 {
		t.Errorf("up to %d open streams of one reader at once, want at most 2", most)
	}
	if len(readers) != 1 || !readerID.MatchString(readers[0]) {
		t.Errorf("the streams came from readers %q, want one reader id kept across every reload", readers)
	}
}

// readerRows samples, through the sqlite3 shell run as the programs' user,
// how many open stream rows each reader has (open 1: streaming; 2: its
// reader opened a newer one, and its process is ending it).
type readerRows struct {
	mu      sync.Mutex
	most    int
	readers map[string]bool
	samples int
	done    chan struct{}
	stopped chan struct{}
}

func sampleReaderRows(t *testing.T, h *hostkit.Host) *readerRows {
	t.Helper()
	cmd := exec.Command("sqlite3", h.DB)
	h.User.RunAs(cmd)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("sqlite3: %v", err)
	}
	r := &readerRows{readers: map[string]bool{}, done: make(chan struct{}), stopped: make(chan struct{})}
	t.Cleanup(func() { r.stop() })
	out := bufio.NewScanner(outPipe)
	io.WriteString(in, ".timeout 5000\n")
	go func() {
		defer close(r.stopped)
		defer cmd.Wait()
		defer in.Close()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		limit := time.After(5 * time.Minute)
		for {
			select {
			case <-r.done:
				return
			case <-limit:
				return
			case <-tick.C:
			}
			if _, err := io.WriteString(in, "SELECT reader, count(*) FROM streams WHERE open > 0 AND kind = 'live' GROUP BY reader;\nSELECT 'end';\n"); err != nil {
				return
			}
			for out.Scan() {
				line := out.Text()
				if line == "end" {
					break
				}
				reader, n, _ := strings.Cut(line, "|")
				count, _ := strconv.Atoi(n)
				r.mu.Lock()
				r.readers[reader] = true
				r.most = max(r.most, count)
				r.mu.Unlock()
			}
			r.mu.Lock()
			r.samples++
			r.mu.Unlock()
		}
	}()
	return r
}

// stop ends the sampling and returns the most open rows of one reader,
// the readers seen and the number of samples.
func (r *readerRows) stop() (most int, readers []string, samples int) {
	select {
	case <-r.done:
	default:
		close(r.done)
	}
	<-r.stopped
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.readers {
		readers = append(readers, k)
	}
	return r.most, readers, r.samples
}

// onHost returns a deployment for posting to h's chat from Go, as
// another client (with a cookie jar per nick) would.
func onHost(h *hostkit.Host) *deployment {
	return &deployment{URL: h.URL + "/", DB: h.DB, requests: &requestLog{}}
}

// testFirewall: Apache with ModSecurity and the OWASP CRS in front of the
// chat, as cPanel hosts run it. Ordinary messages go through and the page
// shows no trouble (a working deployment); a message that looks like code
// to the rule set is refused with the host's HTML 403: the page says the
// host's firewall refused it and what helps, keeps the text, and does not
// send it again as it is; reworded, it goes. Then, in front of the same
// host, CloudLinux's limit of one entry process: a reader's stream holds
// it, so that reader's post gets the host's 508, and another reader's
// stream too; both pages say in words what that means.
func testFirewall(t *testing.T) {
	h := startHost(t, "apache-mod_cgid-modsecurity")
	const room = "firewall"
	ada := newPerson(t, "ada").open(h.URL + "/#" + room)
	ada.say("ada", "hello there, see you at 5")
	ada.waitMessages(1)
	noTrouble := func(tb *tab) {
		t.Helper()
		if got := eval[string](tb, `document.querySelector("#send-error").hidden ? "" : document.querySelector("#send-error").textContent`); got != "" {
			t.Errorf("%s: the page says %q under the message box, want nothing", tb.name, got)
		}
		if got := tb.trouble(); got != "" {
			t.Errorf("%s: the page says %q under the header, want nothing", tb.name, got)
		}
		if got := tb.state(); got != "Live" {
			t.Errorf("%s: the page says %q, want Live", tb.name, got)
		}
	}
	noTrouble(ada)

	ada.expectConsoleError("status of 403")
	const code = "the <script> tag is how you add js"
	ada.typeText(code)
	ada.pressEnter()
	ada.waitFor("the refusal", `!document.querySelector("#send-error").hidden`, waitTimeout)
	want := "Not sent: The web host's firewall refused this message (it looks like code or a command to it). Try rewording it; the site owner can exempt the chat — see " + helpName + "."
	if got := eval[string](ada, `document.querySelector("#send-error").textContent`); got != want {
		t.Errorf("the page says %q, want %q", got, want)
	}
	if got := eval[string](ada, `document.querySelector("#text").value`); got != code {
		t.Errorf("after the refusal the message box holds %q, want %q", got, code)
	}
	if !eval[bool](ada, `document.querySelector("#send").disabled`) {
		t.Errorf("Send is on for the text the firewall refused: it would be refused again")
	}
	ada.pressEnter()
	time.Sleep(500 * time.Millisecond)
	if n := len(hostkit.ModSecurityDenials(h)); n != 1 {
		t.Errorf("ModSecurity refused %d posts, want 1: the page sent the refused text again", n)
	}
	ada.screenshot("firewall-360px", 360, 640, false)
	ada.axe("a post refused by the host's firewall")

	ada.do("empty the box", chromedp.Evaluate[chromedp.Void](`document.querySelector("#text").value = ""`))
	ada.typeText("the script tag is how you add js")
	if eval[bool](ada, `document.querySelector("#send").disabled`) {
		t.Errorf("Send is off for a changed text")
	}
	ada.pressEnter()
	ada.waitFor("the box to empty", `document.querySelector("#text").value === ""`, waitTimeout)
	ada.waitMessages(2)
	checkLog(t, ada, []line{{"ada", "hello there, see you at 5"}, {"ada", "the script tag is how you add js"}})
	noTrouble(ada)

	// CloudLinux's limit: one dynamic request at a time for the account.
	limit := hostkit.LimitEntries(t, h, 1)
	bo := newPerson(t, "bo").openTab()
	bo.expectConsoleError("status of 508")
	// The page's own first requests may take the one entry before its
	// stream does, which then meets a 508 and backs off (1 s, doubling,
	// with jitter): on a loaded machine, where the programs' exits lag, a
	// few times. 45 s leave room for five tries.
	bo.do("load the page", chromedp.Navigate(limit.URL+"/#"+room))
	bo.waitFor("the stream to be live behind the limit", `document.querySelector("#state").dataset.status === "live"`, 3*waitTimeout)
	bo.typeText("is anyone here?")
	bo.pressEnter()
	if eval[bool](bo, `document.querySelector("#nick-dialog").open`) {
		bo.do("answer the nickname dialog", chromedp.SetValue(chromedp.ID("nick-input"), "bo"), chromedp.Click(chromedp.CSS(`#nick-form button[type=submit]`)))
	}
	bo.waitFor("the refusal", `!document.querySelector("#send-error").hidden`, waitTimeout)
	busy := "This site is busy: its web host limits how many requests the site may run at once, and that limit is reached for now."
	if got, want := bo.sendError(), "Not sent yet: "+busy+" Your messages wait here and go out by themselves as soon as it answers."; got != want {
		t.Errorf("over the entry limit, the page says %q, want %q", got, want)
	}
	// The message waits, and goes again by itself once the site is less
	// busy.
	if got, want := bo.outbox(), []waitingLine{{"bo", "is anyone here?", "sending…"}}; !slices.Equal(got, want) {
		t.Errorf("over the entry limit, the page shows %+v under the log, want %+v", got, want)
	}

	cy := newPerson(t, "cy").openTab()
	cy.expectConsoleError("status of 508")
	cy.expectConsoleError("MIME type")
	cy.do("load the page", chromedp.Navigate(limit.URL+"/#"+room))
	cy.waitFor("the page to be offline", `document.querySelector("#state").dataset.status === "offline" && document.querySelector("#trouble-text").textContent !== ""`, waitTimeout)
	if got := cy.trouble(); got != busy {
		t.Errorf("over the entry limit, the page says %q under the header, want %q", got, busy)
	}
	if got := cy.state(); !offlineState.MatchString(got) {
		t.Errorf("over the entry limit, the page says %q, want “Offline — trying again in N s”", got)
	}
	t.Logf("entry limit: %+v", limit.Stats())
}

// testHostRefuses: on a host that answers every program request with its
// own error page (status), the page loads, says it is offline and why in
// words (want), and a message sent gets the same sentence after "Not
// sent:", with the text kept — or, when the programs are only away for
// now (waits), after "Not sent yet:", the message waiting under the log.
func testHostRefuses(t *testing.T, url string, status int, want string, waits bool) {
	t.Helper()
	tb := newPerson(t, "reader").openTab()
	tb.expectConsoleError(fmt.Sprintf("status of %d", status))
	tb.expectConsoleError("MIME type")
	tb.do("load the page", chromedp.Navigate(url))
	tb.waitFor("the page to say why it is offline", `document.querySelector("#state").dataset.status === "offline" && document.querySelector("#trouble-text").textContent !== ""`, waitTimeout)
	if got := tb.trouble(); got != want {
		t.Errorf("under the header the page says %q, want %q", got, want)
	}
	if got := tb.state(); !offlineState.MatchString(got) {
		t.Errorf("the page says %q, want “Offline — trying again in N s”", got)
	}
	const text = "hello, anyone?"
	tb.typeText(text)
	tb.pressEnter()
	if eval[bool](tb, `document.querySelector("#nick-dialog").open`) {
		tb.do("answer the nickname dialog", chromedp.SetValue(chromedp.ID("nick-input"), "reader"), chromedp.Click(chromedp.CSS(`#nick-form button[type=submit]`)))
	}
	tb.waitFor("the refusal", `!document.querySelector("#send-error").hidden`, waitTimeout)
	if waits {
		if got, w := tb.sendError(), "Not sent yet: "+want+" Your messages wait here and go out by themselves as soon as it answers."; got != w {
			t.Errorf("the page says %q, want %q", got, w)
		}
		if got, w := tb.outbox(), []waitingLine{{"reader", text, "sending…"}}; !slices.Equal(got, w) {
			t.Errorf("the page shows %+v under the log, want %+v", got, w)
		}
	} else {
		if got := tb.sendError(); got != "Not sent: "+want {
			t.Errorf("the page says %q, want %q", got, "Not sent: "+want)
		}
		if got := eval[string](tb, `document.querySelector("#text").value`); got != text {
			t.Errorf("after the refusal the message box holds %q, want %q", got, text)
		}
	}
	tb.axe(fmt.Sprintf("the host answers %d", status))
}
