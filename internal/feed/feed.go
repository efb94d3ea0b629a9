// Package feed watches the database for new messages and fans them out to
// the streams of this process: one change check per poll interval (or per
// wake-up) for the whole process, however many streams it serves.
package feed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/sse"
	"cgichat/internal/store"
)

// SSE event types the feed produces.
const (
	EventMessage  = "message"  // a chat message; id: is its id
	EventDelete   = "delete"   // a message was deleted; id: is the tombstone's
	EventPresence = "presence" // who is in the room now; no id:
)

// pageSize bounds one read of new messages; the feed reads again at once
// while pages come back full.
const pageSize = 500

// roomFrames is how many of a room's latest frames the feed keeps for its
// subscribers: one that falls further behind is told to catch up from the
// database instead. The frames are shared by every subscriber of the
// room, each of which keeps only its place among them; a buffer per
// subscriber (256 pointers, 2 KiB) was a tenth of what an idle stream
// held (docs/performance.md).
const roomFrames = 256

// Frame is one event encoded once, ready to be written to any number of
// clients. ID is 0 for events without an id (presence).
type Frame struct {
	ID    int64
	Room  string
	Bytes []byte
}

// Encode turns a row into its event: a message's id, type "message" and
// the message's JSON as data; a tombstone's id, type "delete" and
// {"id","room","target","time"}. JSON escapes every line break, so no text
// can forge frames.
func Encode(m chat.Message) Frame {
	var v any = m
	event := EventMessage
	if m.Kind == chat.KindDelete {
		event = EventDelete
		v = struct {
			ID     int64  `json:"id"`
			Room   string `json:"room"`
			Target int64  `json:"target"`
			Time   string `json:"time"`
		}{m.ID, m.Room, m.Target, m.Time}
	}
	return Frame{ID: m.ID, Room: m.Room, Bytes: sse.AppendEvent(nil, m.ID, event, mustJSON(v))}
}

// EncodePresence returns the presence event of room: its readers' nicks.
// It has no id, so it never moves a client's Last-Event-ID.
func EncodePresence(room string, nicks []string) Frame {
	v := struct {
		Room  string   `json:"room"`
		Nicks []string `json:"nicks"`
	}{room, nicks}
	return Frame{Room: room, Bytes: sse.AppendEvent(nil, 0, EventPresence, mustJSON(v))}
}

// mustJSON marshals values made only of strings, integers and slices of
// them, which cannot fail. It leaves <, > and & as they are: the page puts
// text in as text, never as HTML, and escaping them would make a message
// of 2,000 '<' six times as long on the wire.
func mustJSON(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("feed: encode event: " + err.Error())
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// Feed reads new messages once per change and hands them to subscribers.
type Feed struct {
	store   *store.Store
	changes *store.Changes
	poll    time.Duration
	wake    <-chan struct{}
	log     *slog.Logger

	// owner names this feed's rows in the streams table; renew is how
	// often they are renewed, and every beats-th renewal every subscriber
	// gets a heartbeat; stale is how long presence outlives a stream.
	// host names the web host, for the budget of live streams.
	owner        string
	host         string
	renew, stale time.Duration
	beats        int

	// live holds the sessions that hold their process, by row, so that
	// the ones whose readers opened a newer stream can be told to end.
	live map[int64]*Session

	mu     sync.Mutex
	rooms  map[string]*room
	n      int   // subscribers in all rooms
	last   int64 // highest id read and handed out
	active chan struct{}

	// Presence, only touched by Run: the last list sent per room, and
	// whether the database changed since presence was last read.
	presence      map[string]string
	presenceDirty bool
	presenceRead  time.Time

	// Set by Share when other processes read the same database.
	lead   Leader
	notify func()
	// Set by PauseWakeUps: the wake-up listener, paused while idle.
	waker Waker

	// Set by Start: wakes the host's other stream processes.
	wakeOthers func()

	// Set by SetTails: the room files pollers read between polls, and
	// how often they read them.
	tails     Tails
	tailEvery time.Duration
	// tailWarned is when a failed tail file was last logged (unix ns):
	// once a minute is enough for a folder that went away or a full disk,
	// which would otherwise be logged at every poll.
	tailWarned atomic.Int64

	// Set by Start: what ends Run, and what Close releases.
	stop    context.CancelFunc
	done    chan struct{}
	closers []func() error
}

// presenceEvery bounds how often a feed reads presence while the database
// keeps changing (every stream renews its row each heartbeat).
const presenceEvery = time.Second

// followerPoll is how often a feed that shares its database but not the
// lead checks it unprompted: once a second, as often as presence is read.
const followerPoll = presenceEvery

// Leader says which of the processes sharing a database polls it every
// poll interval (wake.Lead).
type Leader interface {
	Try() bool // takes the lead if free; reports whether this process holds it
	Release()
}

// Share tells the feed that other processes read its database and share
// its wake-ups, as CGI and mod_fcgid stream processes do. It then polls
// every poll interval only while lead.Try reports that it holds the lead,
// and once a second otherwise; and when its own poll (not a wake-up) finds
// new messages, which only writes that send no wake-up leave (the sqlite3
// shell), it calls notify to wake the others. Hundreds of processes then
// do not all wake four times a second. Call it before Run.
func (f *Feed) Share(lead Leader, notify func()) { f.lead, f.notify = lead, notify }

// Tails keeps the static tail files that pollers read between their polls
// (tail.Dir).
type Tails interface {
	// Ensure makes room's tail file current and returns its URL,
	// relative to the stream program's; "" when the room has none.
	Ensure(ctx context.Context, room string) (string, error)
	// Refresh rewrites room's tail file, if it has one.
	Refresh(ctx context.Context, room string) error
}

// SetTails gives pollers t's files, to be read every interval.
func (f *Feed) SetTails(t Tails, every time.Duration) { f.tails, f.tailEvery = t, every }

// Waker is the listener behind the feed's wake channel (wake.Listener).
type Waker interface {
	Pause() error  // stops wake-ups reaching this process
	Resume() error // listens again and signals the wake channel once
}

// PauseWakeUps has the feed pause w, the listener whose wake-ups it
// receives, while nobody reads the feed, and resume it when a subscriber
// comes: a process kept for later requests (mod_fcgid) then is not woken
// by every post meanwhile. Call it before Run.
func (f *Feed) PauseWakeUps(w Waker) { f.waker = w }

// interval returns how often the feed should poll now.
func (f *Feed) interval() time.Duration {
	if f.lead == nil || f.lead.Try() {
		return f.poll
	}
	return max(f.poll, followerPoll)
}

// New returns a feed over st that asks changes whether anything was
// committed, every poll interval and whenever wake receives (wake may be
// nil: polling only). It renews its streams' rows and hands every
// subscriber a heartbeat every renew interval (SetHeartbeat makes that
// rarer), and counts a reader present until stale after its stream. Run
// drives it and closes changes at its end.
func New(st *store.Store, changes *store.Changes, poll, renew, stale time.Duration, wake <-chan struct{}, log *slog.Logger) *Feed {
	var id [8]byte
	rand.Read(id[:])
	return &Feed{
		store:    st,
		changes:  changes,
		poll:     poll,
		wake:     wake,
		log:      log,
		owner:    hex.EncodeToString(id[:]),
		host:     hostname(),
		live:     make(map[int64]*Session),
		renew:    renew,
		stale:    stale,
		beats:    1,
		rooms:    make(map[string]*room),
		active:   make(chan struct{}, 1),
		presence: make(map[string]string),
	}
}

// SetHeartbeat has the feed tell its subscribers that a heartbeat is due
// about every d instead of at every renewal of their rows: every
// renewal nearest d, at least one. A daemon, which learns from the read
// side that a stream's connection closed, needs a heartbeat far less often
// than a stream's row must be renewed for presence to be right. Call it
// before Run.
func (f *Feed) SetHeartbeat(d time.Duration) {
	f.beats = max(1, int((d+f.renew/2)/f.renew))
}

// Owner returns the name under which this feed renews stream rows.
func (f *Feed) Owner() string { return f.owner }

// hostname names this web host in the streams table, for the budget of
// live streams each host keeps.
func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}

// endSuperseded tells the live sessions whose readers opened a newer
// stream (in this process or another) to end.
func (f *Feed) endSuperseded(ctx context.Context) {
	f.mu.Lock()
	n := len(f.live)
	f.mu.Unlock()
	if n == 0 {
		return
	}
	ids, err := f.store.Superseded(ctx, f.owner)
	if err != nil {
		f.log.Warn("feed: reading superseded streams failed", "err", err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		if s, ok := f.live[id]; ok {
			delete(f.live, id)
			close(s.superseded)
			s.poke()
		}
	}
}

// room is one room's subscribers and its latest frames, in a ring.
type room struct {
	name string
	subs map[*Sub]struct{} // under Feed.mu

	// The ring: written by handOut under Feed.mu and mu, read by the
	// subscribers under mu.
	mu     sync.RWMutex
	frames [roomFrames]*Frame
	next   uint64 // the sequence number the next frame gets
}

// Sub is one stream's subscription to a room.
type Sub struct {
	room *room
	next uint64        // the sequence number of the next frame to read: the reader's alone
	wake chan struct{} // signalled when there is something to read
	beat atomic.Bool   // a heartbeat is due
	// notify, when set (Session.Park), is called after each signal.
	notify atomic.Pointer[func()]
}

// Wake receives when the room has frames the subscriber has not read, or a
// heartbeat is due (Beat). Several at once make one signal.
func (s *Sub) Wake() <-chan struct{} { return s.wake }

// Read calls add with each of the room's frames that the subscriber has not
// read yet, in id order, until add returns false (the frame it was given
// counts as read); the rest stay for the next Read, and Wake signals
// again. Frames are shared: read them, never
// change them. It may repeat frames the subscriber already read from the
// database; compare ids. It reports lagged when the subscriber fell more
// than roomFrames behind: it gets none of those frames and must read what
// it missed from the database.
func (s *Sub) Read(add func(*Frame) bool) (lagged bool) {
	r := s.room
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.next-s.next > roomFrames {
		// Every frame handed out so far was committed first: the
		// database has them, and the subscriber reads on from here.
		s.next = r.next
		return true
	}
	for s.next < r.next {
		fr := r.frames[s.next%roomFrames]
		s.next++
		if !add(fr) {
			if s.next < r.next {
				s.signal()
			}
			break
		}
	}
	return false
}

// Beat reports, once, that a heartbeat is due.
func (s *Sub) Beat() bool { return s.beat.Swap(false) }

// signal makes Wake receive, unless a signal is pending already.
func (s *Sub) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if fn := s.notify.Load(); fn != nil {
		(*fn)()
	}
}

// Subscribe registers interest in room. Every message committed after
// Subscribe returns can be read (or Read reports lagged), so a subscriber
// that reads the database afterwards misses nothing.
func (f *Feed) Subscribe(ctx context.Context, name string) (*Sub, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		// The feed does not read while nobody listens; start from now.
		last, err := f.store.MaxID(ctx)
		if err != nil {
			return nil, err
		}
		f.last = max(f.last, last)
		select {
		case f.active <- struct{}{}:
		default:
		}
	}
	r := f.rooms[name]
	if r == nil {
		r = &room{name: name, subs: make(map[*Sub]struct{})}
		f.rooms[name] = r
	}
	// handOut, the only writer of next, waits for f.mu.
	s := &Sub{room: r, next: r.next, wake: make(chan struct{}, 1)}
	r.subs[s] = struct{}{}
	f.n++
	return s, nil
}

// Unsubscribe removes s; it is handed nothing more.
func (f *Feed) Unsubscribe(s *Sub) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := s.room
	if _, ok := r.subs[s]; !ok {
		return
	}
	delete(r.subs, s)
	if len(r.subs) == 0 && f.rooms[r.name] == r {
		delete(f.rooms, r.name)
	}
	f.n--
}

// Run checks for changes until ctx ends: on every wake-up (from a post on
// this host, or from the database itself) and every poll interval, while
// anyone is subscribed.
func (f *Feed) Run(ctx context.Context) {
	defer f.changes.Close()
	every := f.interval()
	tick := time.NewTicker(every)
	defer tick.Stop()
	renew := time.NewTicker(f.renew)
	defer renew.Stop()
	renewals := 0
	// Reads run under a context that is never cancelled: database/sql and
	// go-sqlite3 then start no goroutine per query to watch it (which
	// costs an idle process wake-ups), and a read takes microseconds, so
	// Run still ends promptly.
	rctx := context.WithoutCancel(ctx)
	for {
		if f.idle() {
			// Nobody reads this feed, so it does not poll: let another
			// process lead.
			if f.lead != nil {
				f.lead.Release()
			}
			if f.waker != nil {
				if err := f.waker.Pause(); err != nil {
					f.log.Warn("feed: pausing wake-ups failed", "err", err)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-f.active:
			}
			// Resume signals the wake channel, so the loop checks at
			// once for what was committed while nobody listened.
			if f.waker != nil {
				if err := f.waker.Resume(); err != nil {
					f.log.Warn("feed: wake-ups unavailable, polling only", "err", err)
				}
			}
		}
		if next := f.interval(); next != every {
			every = next
			tick.Reset(every)
		}
		polled := false
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-f.changes.C():
		case <-tick.C:
			polled = true
		case <-renew.C:
			if renewals++; renewals%f.beats == 0 {
				f.beat()
			}
			if err := f.store.TouchStreams(ctx, f.owner); err != nil {
				f.log.Warn("feed: renewing streams failed", "err", err)
			}
			f.endSuperseded(rctx)
			continue
		}
		changed, err := f.changes.Changed(rctx)
		if err != nil {
			f.log.Warn("feed: change check failed", "err", err)
			continue
		}
		if changed {
			if f.readNew(rctx) > 0 && polled && f.notify != nil {
				f.notify()
			}
			f.presenceDirty = true
			f.endSuperseded(rctx)
		}
		if f.presenceDirty && time.Since(f.presenceRead) >= presenceEvery {
			f.readPresence(rctx)
		}
	}
}

// readPresence reads who is in each room with subscribers and sends the
// list where it changed.
func (f *Feed) readPresence(ctx context.Context) {
	f.presenceDirty = false
	f.presenceRead = time.Now()
	f.mu.Lock()
	rooms := make([]string, 0, len(f.rooms))
	for room := range f.rooms {
		rooms = append(rooms, room)
	}
	for room := range f.presence {
		if f.rooms[room] == nil {
			delete(f.presence, room)
		}
	}
	f.mu.Unlock()
	for _, room := range rooms {
		nicks, err := f.store.Presence(ctx, room, f.stale, PollWindow)
		if err != nil {
			f.log.Warn("feed: reading presence failed", "err", err)
			return
		}
		// A room first seen empty needs no event: streams start with the
		// list they read themselves.
		key := strings.Join(nicks, "\n")
		if f.presence[room] == key {
			continue
		}
		f.presence[room] = key
		f.handOut([]Frame{EncodePresence(room, nicks)})
	}
}

func (f *Feed) idle() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n == 0
}

// readNew reads every message above the last one handed out, page by page,
// hands each to its room's subscribers, and returns how many it read.
func (f *Feed) readNew(ctx context.Context) int {
	n := 0
	for {
		f.mu.Lock()
		after := f.last
		f.mu.Unlock()
		ms, err := f.store.AllAfter(ctx, after, pageSize)
		if err != nil {
			f.log.Warn("feed: read new messages failed", "err", err)
			return n
		}
		frames := make([]Frame, len(ms))
		for i, m := range ms {
			frames[i] = Encode(m)
		}
		f.handOut(frames)
		f.refreshTails(ctx, ms)
		n += len(ms)
		if len(ms) < pageSize {
			return n
		}
	}
}

// tailFailed logs that a tail file could not be written, at most once a
// minute; its readers poll meanwhile.
func (f *Feed) tailFailed(err error) {
	now := time.Now().UnixNano()
	last := f.tailWarned.Load()
	if now-last < int64(time.Minute) || !f.tailWarned.CompareAndSwap(last, now) {
		return
	}
	f.log.Warn("stream: a room's tail file could not be written; its pollers start the program at every poll until it can", "err", err)
}

// refreshTails rewrites the tail files of the rooms of the deletions among
// ms: a deletion made in the sqlite3 shell reaches no post program, and the
// message would stay in its file until the room's next poll.
func (f *Feed) refreshTails(ctx context.Context, ms []chat.Message) {
	if f.tails == nil {
		return
	}
	done := map[string]bool{}
	for _, m := range ms {
		if m.Kind != chat.KindDelete || done[m.Room] {
			continue
		}
		done[m.Room] = true
		if err := f.tails.Refresh(ctx, m.Room); err != nil {
			f.tailFailed(err)
		}
	}
}

// beat tells every subscriber at once that a heartbeat is due, so that the
// writes of all the process's streams come together (a web server in
// front then handles them in a few wake-ups, not one each) and no stream
// needs a timer of its own.
func (f *Feed) beat() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.rooms {
		for s := range r.subs {
			s.beat.Store(true)
			s.signal()
		}
	}
}

// handOut puts frames in their rooms' rings, in order, and wakes the
// rooms' subscribers; it never waits for them.
func (f *Feed) handOut(frames []Frame) {
	f.mu.Lock()
	defer f.mu.Unlock()
	woken := make(map[*room]bool)
	for i := range frames {
		fr := &frames[i]
		if fr.ID != 0 {
			if fr.ID <= f.last {
				continue
			}
			f.last = fr.ID
		}
		r := f.rooms[fr.Room]
		if r == nil {
			continue
		}
		r.mu.Lock()
		r.frames[r.next%roomFrames] = fr
		r.next++
		r.mu.Unlock()
		woken[r] = true
	}
	for r := range woken {
		for s := range r.subs {
			s.signal()
		}
	}
}

// Room returns the room s is subscribed to.
func (s *Sub) Room() string { return s.room.name }
