// Package feed watches the database for new messages and fans them out to
// the streams of this process: one change check per poll interval (or per
// wake-up) for the whole process, however many streams it serves.
package feed

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/sse"
	"cgichat/internal/store"
)

// EventMessage is the SSE event type of a chat message.
const EventMessage = "message"

// pageSize bounds one read of new messages; the feed reads again at once
// while pages come back full.
const pageSize = 500

// subBuffer is how many frames a stream may fall behind before it is told
// to catch up from the database instead.
const subBuffer = 256

// Frame is one message encoded once as an SSE event, ready to be written to
// any number of clients.
type Frame struct {
	ID    int64
	Room  string
	Bytes []byte
}

// Encode turns a message into its event: id, type "message", and the
// message's JSON as data. JSON escapes every line break, so the text cannot
// forge frames.
func Encode(m chat.Message) Frame {
	data, err := json.Marshal(m)
	if err != nil {
		// A struct of strings and an integer always marshals.
		panic("feed: encode message: " + err.Error())
	}
	return Frame{ID: m.ID, Room: m.Room, Bytes: sse.AppendEvent(nil, m.ID, EventMessage, string(data))}
}

// Feed reads new messages once per change and hands them to subscribers.
type Feed struct {
	store   *store.Store
	changes *store.Changes
	poll    time.Duration
	wake    <-chan struct{}
	log     *slog.Logger

	mu     sync.Mutex
	rooms  map[string]map[*Sub]struct{}
	n      int   // subscribers in all rooms
	last   int64 // highest id read and handed out
	active chan struct{}
}

// New returns a feed over st that asks changes whether anything was
// committed, every poll interval and whenever wake receives (wake may be
// nil: polling only). Run drives it and closes changes at its end.
func New(st *store.Store, changes *store.Changes, poll time.Duration, wake <-chan struct{}, log *slog.Logger) *Feed {
	return &Feed{
		store:   st,
		changes: changes,
		poll:    poll,
		wake:    wake,
		log:     log,
		rooms:   make(map[string]map[*Sub]struct{}),
		active:  make(chan struct{}, 1),
	}
}

// Sub is one stream's subscription to a room.
type Sub struct {
	room   string
	c      chan Frame
	lagged atomic.Bool
}

// C delivers the room's new frames in id order. It may repeat frames the
// subscriber already read from the database; compare ids.
func (s *Sub) C() <-chan Frame { return s.c }

// Lagged reports, once, that frames were dropped because C was full; the
// subscriber must then read what it missed from the database.
func (s *Sub) Lagged() bool { return s.lagged.Swap(false) }

// Subscribe registers interest in room. Every message committed after
// Subscribe returns reaches C (or sets Lagged), so a subscriber that reads
// the database afterwards misses nothing.
func (f *Feed) Subscribe(ctx context.Context, room string) (*Sub, error) {
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
	s := &Sub{room: room, c: make(chan Frame, subBuffer)}
	if f.rooms[room] == nil {
		f.rooms[room] = make(map[*Sub]struct{})
	}
	f.rooms[room][s] = struct{}{}
	f.n++
	return s, nil
}

// Unsubscribe removes s; its channel receives nothing more.
func (f *Feed) Unsubscribe(s *Sub) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.rooms[s.room][s]; !ok {
		return
	}
	delete(f.rooms[s.room], s)
	if len(f.rooms[s.room]) == 0 {
		delete(f.rooms, s.room)
	}
	f.n--
}

// Run checks for changes until ctx ends: on every wake-up and every poll
// interval, while anyone is subscribed.
func (f *Feed) Run(ctx context.Context) {
	defer f.changes.Close()
	tick := time.NewTicker(f.poll)
	defer tick.Stop()
	for {
		if f.idle() {
			select {
			case <-ctx.Done():
				return
			case <-f.active:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-tick.C:
		}
		changed, err := f.changes.Changed(ctx)
		if err != nil {
			f.log.Warn("feed: change check failed", "err", err)
			continue
		}
		if changed {
			f.readNew(ctx)
		}
	}
}

func (f *Feed) idle() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n == 0
}

// readNew reads every message above the last one handed out, page by page,
// and hands each to its room's subscribers.
func (f *Feed) readNew(ctx context.Context) {
	for {
		f.mu.Lock()
		after := f.last
		f.mu.Unlock()
		ms, err := f.store.AllAfter(ctx, after, pageSize)
		if err != nil {
			f.log.Warn("feed: read new messages failed", "err", err)
			return
		}
		frames := make([]Frame, len(ms))
		for i, m := range ms {
			frames[i] = Encode(m)
		}
		f.handOut(frames)
		if len(ms) < pageSize {
			return
		}
	}
}

// handOut delivers frames in order without ever blocking: a subscriber
// whose buffer is full is marked lagged instead.
func (f *Feed) handOut(frames []Frame) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fr := range frames {
		if fr.ID <= f.last {
			continue
		}
		f.last = fr.ID
		for s := range f.rooms[fr.Room] {
			select {
			case s.c <- fr:
			default:
				s.lagged.Store(true)
			}
		}
	}
}

// Room returns the room s is subscribed to.
func (s *Sub) Room() string { return s.room }
