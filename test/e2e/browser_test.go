package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// Every page is read as a person in Berlin with British English settings
// would, so the tests know what local time the page must show.
const (
	readerTimezone = "Europe/Berlin"
	readerLocale   = "en-GB"
)

// Bounds of the waits: no step of a test waits longer than this.
const (
	stepTimeout = 20 * time.Second // one browser command
	waitTimeout = 15 * time.Second // something the page should show soon
)

// A person is one browser context: their own storage, cache and
// connections, as if in a browser of their own. Their tabs share a stream.
type person struct {
	t    *testing.T
	name string
	ctx  context.Context
}

// newPerson makes a browser context for t, closed when t ends.
func newPerson(t *testing.T, name string) *person {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The context's first tab stays blank; the person's tabs are its
	// children, so closing one of them leaves the others.
	firstRun(t, ctx, name)
	return &person{t: t, name: name, ctx: ctx}
}

// firstRun creates the tab of ctx. That first run ties the tab's life to
// ctx, so it cannot carry a deadline; the wait is bounded here instead.
func firstRun(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- chromedp.Do(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: open a tab: %v", name, err)
		}
	case <-time.After(stepTimeout):
		t.Fatalf("%s: open a tab: no answer within %s", name, stepTimeout)
	}
}

// A tab is one browser tab of a person, showing the chat.
type tab struct {
	t      *testing.T
	name   string
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	dialogs  []string // JavaScript dialogs the page opened: there must be none
	problems []string // console errors and uncaught exceptions
	expected []string // parts of console errors a test causes on purpose
}

// open opens a new tab at url and waits until its stream is live.
func (p *person) open(url string) *tab {
	p.t.Helper()
	tb := p.openTab()
	tb.goTo(url)
	return tb
}

// openTab opens a new, blank tab, in a window of its own unless opts
// say otherwise (chromedp.WithNewWindow(false) opens it in front of the
// person's other tabs of that window, which are hidden then).
func (p *person) openTab(opts ...chromedp.ContextOption) *tab {
	t := p.t
	t.Helper()
	ctx, cancel := chromedp.NewContext(p.ctx, opts...)
	tb := &tab{t: t, name: p.name, ctx: ctx, cancel: cancel}
	t.Cleanup(tb.close)
	firstRun(t, ctx, p.name)

	// Record (and dismiss) any dialog, and every console error, for the
	// check when the test ends.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			tb.note(&tb.dialogs, string(ev.Type)+": "+ev.Message)
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	console := chromedp.Console(ctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				tb.note(&tb.problems, m.String())
			}
		}
	}()
	tb.do("set the reader's time zone and language",
		call(emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: readerTimezone}),
		call(emulation.SetLocaleOverride, emulation.SetLocaleOverrideParams{Locale: readerLocale}),
	)
	return tb
}

func (tb *tab) note(list *[]string, s string) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	*list = append(*list, s)
}

// expectConsoleError allows console errors containing part, such as
// Chromium's note on a failed request that the test makes fail.
func (tb *tab) expectConsoleError(part string) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.expected = append(tb.expected, part)
}

// close checks that the page opened no dialog and logged no unexpected
// error, then closes the tab. It runs when the test ends, and may run
// earlier when a test closes a tab on purpose.
func (tb *tab) close() {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if tb.cancel == nil {
		return
	}
	for _, d := range tb.dialogs {
		tb.t.Errorf("%s: the page opened a dialog: %s", tb.name, d)
	}
	for _, p := range tb.problems {
		if !containsAny(p, tb.expected) {
			tb.t.Errorf("%s: console: %s", tb.name, p)
		}
	}
	tb.cancel()
	tb.cancel = nil
}

func containsAny(s string, parts []string) bool {
	for _, p := range parts {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// call makes a protocol command an action.
func call[P, R any](cmd cdp.Command[P, R], params P) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, cmd, params)
		return err
	})
}

// do runs actions in the tab within stepTimeout, failing the test on error.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %s: %v", tb.name, what, err)
	}
}

// eval evaluates js in the tab and returns its value as a T.
func eval[T any](tb *tab, js string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("%s: evaluate %s: %v", tb.name, js, err)
	}
	return v
}

// waitFor waits until the JavaScript condition cond is true in the tab,
// at most within, and fails the test with what the page shows otherwise.
func (tb *tab) waitFor(what, cond string, within time.Duration) {
	tb.t.Helper()
	tb.waitShowing(what, cond, within, "")
}

// waitShowing is waitFor that, when it fails, also reports the value of
// the JavaScript expression shows (a string: what the part of the page
// being waited on says), unless shows is empty.
func (tb *tab) waitShowing(what, cond string, within time.Duration, shows string) {
	tb.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if eval[bool](tb, "Boolean("+cond+")") {
			return
		}
		if time.Now().After(deadline) {
			more := ""
			if shows != "" {
				more = "; " + tb.describe(shows)
			}
			tb.t.Fatalf("%s: waited %s for %s; the page shows state %q and messages %v%s",
				tb.name, within, what, tb.state(), tb.messages(), more)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// describe returns the value of the JavaScript expression js (a string),
// for a failure's message: when it cannot be evaluated it says why
// instead, so that the failure it describes is still the one reported.
func (tb *tab) describe(js string) string {
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		return fmt.Sprintf("(the page could not say more: %v)", err)
	}
	return v
}

// goTo loads url in the tab and waits until the stream is live.
func (tb *tab) goTo(url string) {
	tb.t.Helper()
	tb.do("load "+url, chromedp.Navigate(url))
	tb.waitLive()
}

// reload reloads the tab's page (a navigation to the same address with a
// #room would only change the room) and waits until the stream is live.
func (tb *tab) reload() {
	tb.t.Helper()
	tb.do("reload", chromedp.Reload())
	tb.waitLive()
}

// waitLive waits until the page says its stream is live.
func (tb *tab) waitLive() {
	tb.t.Helper()
	tb.waitFor("the stream to be live", `document.querySelector("#state").dataset.status === "live"`, waitTimeout)
}

// state returns the connection state the page shows.
func (tb *tab) state() string {
	tb.t.Helper()
	return eval[string](tb, `document.querySelector("#state").textContent`)
}

// trouble returns what the page says under the header about why it is
// offline, or "" when that line is hidden.
func (tb *tab) trouble() string {
	tb.t.Helper()
	return eval[string](tb, `document.querySelector("#trouble").hidden ? "" : document.querySelector("#trouble-text").textContent`)
}

// offlineState is what the header says while the page waits to try again.
var offlineState = regexp.MustCompile(`^Offline — trying again in [1-9][0-9]* s$`)

// shown is a message as the page shows it.
type shown struct {
	ID    int64  `json:"id"`
	Nick  string `json:"nick"`
	Text  string `json:"text"`
	Clock string `json:"clock"` // the time as shown
	Time  string `json:"time"`  // the time element's datetime
}

// messages returns the messages in the page's log, top to bottom.
func (tb *tab) messages() []shown {
	tb.t.Helper()
	return eval[[]shown](tb, `[...document.querySelectorAll("#log .msg")].map((li) => ({
		id: Number(li.dataset.id),
		nick: li.querySelector(".nick").textContent,
		text: li.querySelector(".text").textContent,
		clock: li.querySelector("time").textContent,
		time: li.querySelector("time").dateTime,
	}))`)
}

// waitMessages waits until the log holds n messages.
func (tb *tab) waitMessages(n int) []shown {
	tb.t.Helper()
	tb.waitFor(fmt.Sprintf("%d messages", n), fmt.Sprintf(`document.querySelectorAll("#log .msg").length >= %d`, n), waitTimeout)
	return tb.messages()
}

// typeText types text into the message box as a person would: each line
// as typed text, Shift+Enter between lines.
func (tb *tab) typeText(text string) {
	tb.t.Helper()
	actions := []chromedp.Action[chromedp.Void]{chromedp.Focus(chromedp.ID("text"))}
	for i, line := range strings.Split(text, "\n") {
		if i > 0 {
			actions = append(actions, chromedp.KeyEvent(kb.Enter, chromedp.KeyModifiers(kb.ModifierShift)))
		}
		if line != "" {
			actions = append(actions, call(input.InsertText, input.InsertTextParams{Text: line}))
		}
	}
	tb.do("type a message", actions...)
}

// pressEnter presses Enter in the message box. It sends the key down and
// up without the character event that would type a line break: a browser
// drops that event itself when the page cancels the key down, as the page
// does to send, but the protocol's separate char event would still land.
func (tb *tab) pressEnter() {
	tb.t.Helper()
	enter := func(typ input.DispatchKeyEventType) chromedp.Action[chromedp.Void] {
		return call(input.DispatchKeyEvent, input.DispatchKeyEventParams{
			Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
		})
	}
	tb.do("press Enter", chromedp.Focus(chromedp.ID("text")),
		enter(input.DispatchKeyEventTypeRawKeyDown), enter(input.DispatchKeyEventTypeKeyUp))
}

// say types text and sends it with Enter, answering the nickname dialog
// with nick if the page asks, and waits until the chat has it (the box is
// empty, and nothing waits to be sent). It reports whether the page asked
// for the nickname.
func (tb *tab) say(nick, text string) (asked bool) {
	tb.t.Helper()
	asked = tb.submit(nick, text)
	tb.waitFor("the message to be sent", `document.querySelectorAll("#outbox .pending").length === 0`, waitTimeout)
	return asked
}

// submit is say without waiting for the chat: it returns once the message
// left the box for the outbox (to wait there when the chat is away).
func (tb *tab) submit(nick, text string) (asked bool) {
	tb.t.Helper()
	tb.typeText(text)
	tb.pressEnter()
	asked = eval[bool](tb, `document.querySelector("#nick-dialog").open`)
	if asked {
		tb.do("answer the nickname dialog", call(input.InsertText, input.InsertTextParams{Text: nick}), chromedp.KeyEvent(kb.Enter))
	}
	tb.waitFor("the message box to empty after sending", `document.querySelector("#text").value === ""`, waitTimeout)
	return asked
}

// resetViewport undoes chromedp.EmulateViewport (whose ResetViewport keeps
// the emulated size in this Chromium).
var resetViewport = call(emulation.ClearDeviceMetricsOverride, cdp.Empty{})

// screenshot saves what the tab shows at the given viewport as
// test-artifacts/name.png, in the dark theme if dark is set.
func (tb *tab) screenshot(name string, width, height int64, dark bool) {
	tb.t.Helper()
	scheme := "light"
	if dark {
		scheme = "dark"
	}
	tb.do("set the viewport",
		chromedp.EmulateViewport(width, height),
		call(emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		}),
	)
	defer tb.do("reset the viewport", resetViewport,
		call(emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{}))
	// Let the new layout settle (and the log scroll to its end).
	eval[bool](tb, `new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(() => ok(true))))`)
	ctx, cancel := context.WithTimeout(tb.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatalf("%s: screenshot: %v", tb.name, err)
	}
	dir := filepath.Join(repoRoot, "test-artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("screenshot: %s", path)
}
