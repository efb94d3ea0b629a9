package feed_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/feed"
	"cgichat/internal/sse"
	"cgichat/internal/store"
	"cgichat/internal/wake"
)

// start opens a store and runs a feed over it until the test ends. wake
// may be nil for a polling-only feed.
func start(t *testing.T, poll time.Duration, wake <-chan struct{}) (*store.Store, *feed.Feed) {
	t.Helper()
	return startWith(t, poll, wake, nil)
}

// startWith is start, with a chance to set the feed up before it runs.
func startWith(t *testing.T, poll time.Duration, wake <-chan struct{}, setup func(*feed.Feed)) (*store.Store, *feed.Feed) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "chat.db"), store.Options{Concurrent: true})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := st.Changes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := feed.New(st, ch, poll, time.Hour, 15*time.Second, wake, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if setup != nil {
		setup(f)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		st.Close()
	})
	return st, f
}

func mustSubscribe(t *testing.T, f *feed.Feed, room string) *feed.Sub {
	t.Helper()
	s, err := f.Subscribe(context.Background(), room)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Unsubscribe(s) })
	return s
}

func insert(t *testing.T, st *store.Store, room, text string) chat.Message {
	t.Helper()
	m, err := st.Insert(context.Background(), room, "ada", text)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// receive returns the subscriber's next frame, waiting up to 3 s for it.
func receive(t *testing.T, s *feed.Sub) feed.Frame {
	t.Helper()
	timeout := time.After(3 * time.Second)
	for {
		if fr, ok := next(s); ok {
			return fr
		}
		select {
		case <-s.Wake():
		case <-timeout:
			t.Fatal("no frame within 3 s")
			return feed.Frame{}
		}
	}
}

// next returns the subscriber's next frame, if it has one now.
func next(s *feed.Sub) (feed.Frame, bool) {
	var got *feed.Frame
	s.Read(func(fr *feed.Frame) bool {
		got = fr
		return false
	})
	if got == nil {
		return feed.Frame{}, false
	}
	return *got, true
}

// none checks that the subscriber gets no frame within d.
func none(t *testing.T, s *feed.Sub, d time.Duration, why string) {
	t.Helper()
	timeout := time.After(d)
	for {
		if fr, ok := next(s); ok {
			t.Errorf("%s: got frame %d %q", why, fr.ID, fr.Bytes)
			return
		}
		select {
		case <-s.Wake():
		case <-timeout:
			return
		}
	}
}

// TestEncode checks that a message is one event whatever its text holds:
// line breaks escaped by JSON, and <, > and & left as they are (the page
// shows text as text), so markup costs no more on the wire than itself.
func TestEncode(t *testing.T) {
	fr := feed.Encode(chat.Message{ID: 3, Room: "r", Nick: "n", Text: "a\n\nevent: x\ndata: <y>&\u2028", Time: "t"})
	want := "id: 3\nevent: message\ndata: " +
		`{"id":3,"room":"r","nick":"n","text":"a\n\nevent: x\ndata: <y>&\u2028","time":"t"}` + "\n\n"
	if got := string(fr.Bytes); got != want {
		t.Errorf("Encode = %q, want %q", got, want)
	}
	if fr.ID != 3 || fr.Room != "r" {
		t.Errorf("frame id, room = %d, %q; want 3, r", fr.ID, fr.Room)
	}
}

func TestPollingDeliversToTheRightRoom(t *testing.T) {
	st, f := start(t, 10*time.Millisecond, nil)
	a := mustSubscribe(t, f, "a")
	b := mustSubscribe(t, f, "b")
	insert(t, st, "b", "for b")
	m := insert(t, st, "a", "for a")
	if got := receive(t, a); got.ID != m.ID {
		t.Errorf("room a got id %d, want %d", got.ID, m.ID)
	}
	if got := receive(t, b); got.ID != m.ID-1 || !strings.Contains(string(got.Bytes), "for b") {
		t.Errorf("room b got %q, want the message for b", got.Bytes)
	}
	none(t, a, 50*time.Millisecond, "room a got another frame")
}

func TestWakeUpBeatsSlowPoll(t *testing.T) {
	wake := make(chan struct{}, 1)
	st, f := start(t, time.Hour, wake)
	s := mustSubscribe(t, f, "lobby")
	m := insert(t, st, "lobby", "hi")
	wake <- struct{}{}
	if got := receive(t, s); got.ID != m.ID {
		t.Errorf("got id %d, want %d", got.ID, m.ID)
	}
}

func TestNothingFromBeforeSubscribing(t *testing.T) {
	st, f := start(t, 10*time.Millisecond, nil)
	insert(t, st, "lobby", "old")
	s := mustSubscribe(t, f, "lobby")
	m := insert(t, st, "lobby", "new")
	if got := receive(t, s); got.ID != m.ID {
		t.Errorf("first frame id %d, want %d (the message after subscribing)", got.ID, m.ID)
	}
}

func TestSlowSubscriberIsToldItLagged(t *testing.T) {
	st, f := start(t, 5*time.Millisecond, nil)
	s := mustSubscribe(t, f, "lobby")
	// More messages than the room keeps, never read.
	for i := 0; i < 300; i++ {
		insert(t, st, "lobby", "x")
	}
	// Once a subscriber that came later has the next message, the feed
	// has handed out every one before it.
	probe := mustSubscribe(t, f, "lobby")
	marker := insert(t, st, "lobby", "marker")
	for {
		if fr := receive(t, probe); fr.ID == marker.ID {
			break
		}
	}
	var got []int64
	lagged := s.Read(func(fr *feed.Frame) bool {
		got = append(got, fr.ID)
		return true
	})
	// It is handed none of what it missed: all of that is for the
	// database to give.
	if !lagged || len(got) != 0 {
		t.Fatalf("after 301 unread messages: lagged %v with frames %v; want lagged and none", lagged, got)
	}
	// What comes after, it is handed again.
	m := insert(t, st, "lobby", "after")
	if fr := receive(t, s); fr.ID != m.ID {
		t.Errorf("after lagging: frame %d, want %d", fr.ID, m.ID)
	}
}

// TestReadStopsWhereAsked checks that a subscriber reads its frames in
// order, in as many Reads as it likes, and is woken for those it left.
func TestReadStopsWhereAsked(t *testing.T) {
	st, f := start(t, 10*time.Millisecond, nil)
	s := mustSubscribe(t, f, "lobby")
	probe := mustSubscribe(t, f, "lobby")
	var want []int64
	for i := range 5 {
		want = append(want, insert(t, st, "lobby", fmt.Sprint(i)).ID)
	}
	for fr := receive(t, probe); fr.ID != want[4]; fr = receive(t, probe) {
	}
	var got []int64
	s.Read(func(fr *feed.Frame) bool {
		got = append(got, fr.ID)
		return len(got) < 2
	})
	select {
	case <-s.Wake():
	default:
		t.Error("no wake-up for the frames left unread")
	}
	s.Read(func(fr *feed.Frame) bool {
		got = append(got, fr.ID)
		return true
	})
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("read %v, want %v", got, want)
	}
}

func TestEncodeDelete(t *testing.T) {
	fr := feed.Encode(chat.Message{ID: 9, Room: "r", Kind: chat.KindDelete, Target: 4, Time: "t"})
	want := "id: 9\nevent: delete\ndata: {\"id\":9,\"room\":\"r\",\"target\":4,\"time\":\"t\"}\n\n"
	if got := string(fr.Bytes); got != want {
		t.Errorf("Encode(tombstone) = %q, want %q", got, want)
	}
}

func TestPresenceChangesAreSent(t *testing.T) {
	st, f := start(t, 10*time.Millisecond, nil)
	s := mustSubscribe(t, f, "lobby")
	ctx := context.Background()
	if _, err := st.OpenStream(ctx, store.StreamInput{Owner: "other", Room: "lobby", Nick: "bob", Addr: "10.0.0.1", Stale: time.Minute}); err != nil {
		t.Fatal(err)
	}
	fr := receive(t, s)
	if fr.ID != 0 || !strings.Contains(string(fr.Bytes), `event: presence`) || !strings.Contains(string(fr.Bytes), `"nicks":["bob"]`) {
		t.Errorf("frame = %q, want a presence event listing bob", fr.Bytes)
	}
	// Nothing changed: no second presence event.
	insert(t, st, "lobby", "x")
	if fr := receive(t, s); !strings.Contains(string(fr.Bytes), "event: message") {
		t.Errorf("frame = %q, want only the message", fr.Bytes)
	}
}

// lead is a feed.Leader whose answer the test sets.
// TestIdleFeedPausesWakeUps checks that a feed nobody reads takes its
// wake-up socket away, so that posts stop waking its process, and that a
// subscriber brings it back, woken by the next post.
func TestIdleFeedPausesWakeUps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "chat.db-wake")
	l, err := wake.Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	n, err := wake.NewNotifier(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	sockets := func() int {
		entries, _ := os.ReadDir(dir)
		return len(entries)
	}
	waitFor := func(want int, what string) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for sockets() != want && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if got := sockets(); got != want {
			t.Fatalf("%s: %d sockets in the wake-up directory, want %d", what, got, want)
		}
	}
	st, f := startWith(t, time.Hour, l.C(), func(f *feed.Feed) { f.PauseWakeUps(l) })
	waitFor(0, "before any subscriber")

	s := mustSubscribe(t, f, "lobby")
	waitFor(1, "with a subscriber")
	m := insert(t, st, "lobby", "hi")
	n.Notify()
	if got := receive(t, s); got.ID != m.ID {
		t.Errorf("got id %d, want %d", got.ID, m.ID)
	}

	// The next wake-up finds nobody reading: the socket goes.
	f.Unsubscribe(s)
	insert(t, st, "lobby", "to nobody")
	n.Notify()
	waitFor(0, "after the last subscriber left")
}

// waitCount waits up to 3 s for c to count something, and returns it.
func waitCount(c *atomic.Int32) int32 {
	deadline := time.Now().Add(3 * time.Second)
	for c.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return c.Load()
}

type lead struct {
	held     atomic.Bool
	released atomic.Int32
}

func (l *lead) Try() bool { return l.held.Load() }
func (l *lead) Release()  { l.released.Add(1) }

func TestFollowerPollsOnceASecond(t *testing.T) {
	var notified atomic.Int32
	st, f := startWith(t, 10*time.Millisecond, nil, func(f *feed.Feed) {
		f.Share(&lead{}, func() { notified.Add(1) })
	})
	s := mustSubscribe(t, f, "lobby")
	m := insert(t, st, "lobby", "from the shell")
	none(t, s, 500*time.Millisecond, "a follower read a frame within 500 ms; it should poll once a second")
	if got := receive(t, s); got.ID != m.ID {
		t.Errorf("got id %d, want %d", got.ID, m.ID)
	}
	// Nobody announced it: whoever polled it wakes the others.
	if n := waitCount(&notified); n != 1 {
		t.Errorf("the follower woke the others %d times after polling one new message, want 1", n)
	}
}

func TestLeaderWakesTheOthersForWhatItPolled(t *testing.T) {
	var notified atomic.Int32
	l := &lead{}
	l.held.Store(true)
	st, f := startWith(t, 10*time.Millisecond, nil, func(f *feed.Feed) {
		f.Share(l, func() { notified.Add(1) })
	})
	s := mustSubscribe(t, f, "lobby")
	m := insert(t, st, "lobby", "from the shell")
	if got := receive(t, s); got.ID != m.ID {
		t.Errorf("got id %d, want %d", got.ID, m.ID)
	}
	if n := waitCount(&notified); n != 1 {
		t.Errorf("the leader woke the others %d times after polling one new message, want 1", n)
	}
	// Nobody left: the feed gives the lead up.
	f.Unsubscribe(s)
	insert(t, st, "lobby", "to nobody")
	if waitCount(&l.released) == 0 {
		t.Error("a feed without subscribers kept the lead")
	}
}

func TestLeaderDoesNotRepeatWakeUps(t *testing.T) {
	var notified atomic.Int32
	wake := make(chan struct{}, 1)
	l := &lead{}
	l.held.Store(true)
	st, f := startWith(t, time.Hour, wake, func(f *feed.Feed) {
		f.Share(l, func() { notified.Add(1) })
	})
	s := mustSubscribe(t, f, "lobby")
	m := insert(t, st, "lobby", "posted")
	wake <- struct{}{}
	if got := receive(t, s); got.ID != m.ID {
		t.Errorf("got id %d, want %d", got.ID, m.ID)
	}
	if n := notified.Load(); n != 0 {
		t.Errorf("a message that came with a wake-up made the leader wake the others %d times, want 0", n)
	}
}

// TestSessionWritesTheBacklogInChunks resumes a session from the start of
// a room of long messages: the backlog comes in chunks of at most 64 KiB
// (plus the event that crosses the mark), every message once and in
// order, then ready.
func TestSessionWritesTheBacklogInChunks(t *testing.T) {
	st, f := start(t, time.Hour, nil)
	long := strings.Repeat("<", chat.MaxTextLen)
	var want []int64
	for range 250 {
		want = append(want, insert(t, st, "lobby", long).ID)
	}
	ctx := context.Background()
	s, err := f.Open(ctx, feed.Request{Room: "lobby", Resume: true, Mode: "live", Lifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const most = 64<<10 + 4096 // a chunk, and the event that crosses the mark
	var got []int64
	for chunks := 0; ; chunks++ {
		b, err := s.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > most {
			t.Fatalf("chunk %d holds %d bytes, want at most %d", chunks, len(b), most)
		}
		r := sse.NewReader(bufio.NewReader(bytes.NewReader(b)))
		ready := false
		for {
			ev, err := r.Next()
			if err != nil {
				break
			}
			switch ev.Type {
			case "message":
				id, _ := strconv.ParseInt(ev.ID, 10, 64)
				got = append(got, id)
			case "ready":
				ready = true
			}
		}
		if ready {
			break
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the backlog sent %d ids, want the %d messages once, in order", len(got), len(want))
	}
}

// TestHeartbeatReachesEverySubscriber checks that the feed tells every
// subscriber, in every room, that a heartbeat is due each renew interval.
func TestHeartbeatReachesEverySubscriber(t *testing.T) {
	f := runRenewing(t, 50*time.Millisecond, 0)
	subs := []*feed.Sub{mustSubscribe(t, f, "a"), mustSubscribe(t, f, "a"), mustSubscribe(t, f, "b")}
	for i, s := range subs {
		for n := range 2 {
			select {
			case <-s.Wake():
			case <-time.After(3 * time.Second):
				t.Fatalf("subscriber %d: no wake-up within 3 s for heartbeat %d", i, n)
			}
			if !s.Beat() {
				t.Errorf("subscriber %d: woken without a heartbeat due", i)
			}
			if s.Beat() {
				t.Errorf("subscriber %d: one heartbeat reported twice", i)
			}
		}
	}
}

// runRenewing runs a feed that renews its rows every renew and, unless
// heartbeat is 0, has a heartbeat about every heartbeat.
func runRenewing(t *testing.T, renew, heartbeat time.Duration) *feed.Feed {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "chat.db"), store.Options{Concurrent: true})
	if err != nil {
		t.Fatal(err)
	}
	ch, err := st.Changes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := feed.New(st, ch, time.Hour, renew, time.Minute, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if heartbeat > 0 {
		f.SetHeartbeat(heartbeat)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		st.Close()
	})
	return f
}

// TestHeartbeatRarerThanRenewal checks that a feed given a heartbeat of
// fifteen renew intervals tells its subscriber only every fifteenth time,
// as a daemon's 30 s heartbeat over 5 s renewals does.
func TestHeartbeatRarerThanRenewal(t *testing.T) {
	f := runRenewing(t, 20*time.Millisecond, 300*time.Millisecond)
	s := mustSubscribe(t, f, "a")
	for n := range 2 {
		select {
		case <-s.Wake():
		case <-time.After(3 * time.Second):
			t.Fatalf("no wake-up within 3 s for heartbeat %d", n)
		}
		if !s.Beat() {
			t.Fatalf("heartbeat %d: woken without a heartbeat due", n)
		}
		// The next renewals, 20 ms apart, bring none.
		select {
		case <-s.Wake():
			t.Fatalf("another wake-up within 150 ms of heartbeat %d (heartbeat due: %v); want the next one 300 ms later", n, s.Beat())
		case <-time.After(150 * time.Millisecond):
		}
	}
}

// TestSessionPark checks a session whose writer waits without a goroutine:
// TryNext says when there is nothing yet, Park's function is called for
// each thing that gives it more — a message, the end of the lifetime or of
// the context, a newer stream of the reader — and TryNext then gives it;
// after stop, nothing calls the function.
func TestSessionPark(t *testing.T) {
	tests := []struct {
		name     string
		lifetime time.Duration
		cause    func(t *testing.T, st *store.Store, f *feed.Feed, cancel context.CancelFunc)
		want     string // an event type the chunk holds, or the reason the session ended
	}{
		{"Message", time.Minute, func(t *testing.T, st *store.Store, f *feed.Feed, cancel context.CancelFunc) {
			insert(t, st, "lobby", "hello")
		}, "message"},
		{"Lifetime", 200 * time.Millisecond, func(*testing.T, *store.Store, *feed.Feed, context.CancelFunc) {}, "lifetime"},
		{"Context", time.Minute, func(t *testing.T, st *store.Store, f *feed.Feed, cancel context.CancelFunc) { cancel() }, "shutdown"},
		{"Superseded", time.Minute, func(t *testing.T, st *store.Store, f *feed.Feed, cancel context.CancelFunc) {
			s, err := f.Open(context.Background(), feed.Request{Room: "lobby", Reader: "r1", Mode: "live", Lifetime: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			insert(t, st, "other", "a change the feed notices") // it then reads superseded streams
		}, "superseded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, f := start(t, 20*time.Millisecond, nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s, err := f.Open(ctx, feed.Request{Room: "lobby", Reader: "r1", Mode: "live", Lifetime: tt.lifetime})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// The opening and the ready event come at once.
			for {
				b, err := s.TryNext(ctx)
				if errors.Is(err, feed.ErrWait) {
					break
				}
				if err != nil || len(b) == 0 && s.Reason() != "" {
					t.Fatalf("opening: %q, %v (%s)", b, err, s.Reason())
				}
			}
			called := make(chan struct{}, 1)
			stop := s.Park(ctx, func() {
				select {
				case called <- struct{}{}:
				default:
				}
			})
			if b, err := s.TryNext(ctx); !errors.Is(err, feed.ErrWait) {
				t.Fatalf("nothing happened yet, but TryNext gave %q, %v", b, err)
			}
			tt.cause(t, st, f, cancel)
			var got []byte
			for got == nil {
				select {
				case <-called:
				case <-time.After(5 * time.Second):
					t.Fatal("Park's function was not called within 5 s")
				}
				for {
					b, err := s.TryNext(ctx)
					got = append(got, b...)
					if errors.Is(err, feed.ErrWait) {
						break
					}
					if errors.Is(err, io.EOF) {
						got = append(got, "ended: "+s.Reason()...)
						break
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				if len(got) == 0 {
					got = nil // a call for nothing new (a heartbeat's)
				}
			}
			if tt.want == "message" && !bytes.Contains(got, []byte("event: message")) || tt.want != "message" && string(got) != "ended: "+tt.want {
				t.Errorf("after the %s, TryNext gave %q, want %s", tt.name, got, tt.want)
			}
			stop()
			if tt.want != "message" {
				return
			}
			insert(t, st, "lobby", "after stop")
			select {
			case <-called:
				t.Error("Park's function was called after stop")
			case <-time.After(200 * time.Millisecond):
			}
		})
	}
}

// TestWaitingSessionKeepsNoPage checks that a session that sent its
// history and waits, driven by TryNext, holds neither the page of
// messages it read nor a buffer: ten thousand waiting streams would each
// keep them.
func TestWaitingSessionKeepsNoPage(t *testing.T) {
	st, f := start(t, time.Hour, nil)
	for i := range 60 {
		insert(t, st, "lobby", fmt.Sprintf("message %d", i))
	}
	ctx := context.Background()
	s, err := f.Open(ctx, feed.Request{Room: "lobby", History: 50, Mode: "live", Lifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sent := 0
	for {
		b, err := s.TryNext(ctx)
		sent += bytes.Count(b, []byte("event: message\n"))
		if errors.Is(err, feed.ErrWait) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if sent != 50 {
		t.Fatalf("the history sent %d messages, want 50", sent)
	}
	if pages, buf := s.Held(); pages || buf != 0 {
		t.Errorf("a waiting session holds a page of messages (%v) and a buffer of %d bytes, want neither", pages, buf)
	}
}

// TestTryNextLeavesReadsToNextCall checks that a session driven by
// TryNext that finds its reader fell behind the room's frames does not
// read the database in that call: it says so (Reads), and the calls that
// follow give every message it missed, once, in order.
func TestTryNextLeavesReadsToNextCall(t *testing.T) {
	st, f := start(t, 10*time.Millisecond, nil)
	ctx := context.Background()
	s, err := f.Open(ctx, feed.Request{Room: "lobby", Reader: "r1", Mode: "live", Lifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for {
		if _, err := s.TryNext(ctx); errors.Is(err, feed.ErrWait) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	var want []int64
	for i := range 300 {
		want = append(want, insert(t, st, "lobby", fmt.Sprintf("missed %d", i)).ID)
	}
	// Once a subscriber that came later has the next message, the feed
	// has handed out every one before it.
	probe := mustSubscribe(t, f, "lobby")
	marker := insert(t, st, "lobby", "marker")
	want = append(want, marker.ID)
	for {
		if fr := receive(t, probe); fr.ID == marker.ID {
			break
		}
	}
	if s.Reads() {
		t.Fatal("Reads before the session found it fell behind")
	}
	b, err := s.TryNext(ctx)
	if err != nil || strings.Contains(string(b), "event: message") {
		t.Fatalf("the call that found the reader behind: %.80q, %v; want no message (no read) and no error", b, err)
	}
	if !s.Reads() {
		t.Fatal("after falling behind, Reads is false")
	}
	var got []int64
	for range 100 {
		b, err := s.TryNext(ctx)
		if errors.Is(err, feed.ErrWait) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "id: "); ok {
				id, _ := strconv.ParseInt(v, 10, 64)
				got = append(got, id)
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("caught up with %d messages (first %v), want the %d missed, once each, in order", len(got), got[:min(len(got), 3)], len(want))
	}
	if s.Reads() {
		t.Error("Reads after catching up")
	}
}
