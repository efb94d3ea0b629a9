package feed

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"cgichat/internal/store"
	"cgichat/internal/wake"
)

// Options set up a running feed.
type Options struct {
	// Poll is how often the database is checked without a wake-up
	// (CHAT_POLL_MS).
	Poll time.Duration
	// Heartbeat is how often streams write a comment
	// (CHAT_HEARTBEAT_SECONDS, or the daemons' longer default).
	Heartbeat time.Duration
	// Renew is how often the feed renews its streams' rows; presence
	// outlives a stream by StaleAfter of it. 0: Heartbeat.
	Renew time.Duration
	// WakeDir is where this host's posts wake its streams (CHAT_WAKE_DIR).
	WakeDir string
	Log     *slog.Logger
}

// StaleAfter is how long a stream's row may go unrenewed before it counts
// as gone (its process was killed), and how long a reader stays in the
// presence list after a stream ends (so reconnects do not blink): three
// heartbeats and five seconds.
func StaleAfter(heartbeat time.Duration) time.Duration { return 3*heartbeat + 5*time.Second }

// Start runs a feed over st until Close: it listens for this host's
// wake-ups in o.WakeDir (polling only while the directory cannot be used,
// which the log says once, and binding again when it vanishes), shares the
// polling with the other processes of the host (one polls every o.Poll,
// the others once a second, woken by it), and pauses its wake-up socket
// while nobody reads it.
func Start(ctx context.Context, st *store.Store, o Options) (*Feed, error) {
	changes, err := st.Changes(ctx)
	if err != nil {
		return nil, err
	}
	var wakeC <-chan struct{}
	listener, notifier, err := wakeUps(o.WakeDir, o.Log)
	if err != nil {
		o.Log.Warn("wake-ups unavailable, polling only", "poll", o.Poll, "err", err)
	} else {
		wakeC = listener.C()
	}
	renew := o.Renew
	if renew <= 0 {
		renew = o.Heartbeat
	}
	f := New(st, changes, o.Poll, renew, StaleAfter(renew), wakeC, o.Log)
	f.SetHeartbeat(o.Heartbeat)
	if listener != nil {
		f.PauseWakeUps(listener)
		lead := wake.NewLead(o.WakeDir)
		f.wakeOthers = func() {
			if _, err := notifier.Notify(); err != nil {
				o.Log.Warn("wake-up failed", "err", err)
			}
		}
		f.Share(lead, f.wakeOthers)
		f.closers = append(f.closers, listener.Close, notifier.Close, lead.Close)
	}
	ctx, f.stop = context.WithCancel(ctx)
	f.done = make(chan struct{})
	go func() {
		defer close(f.done)
		f.Run(ctx)
	}()
	return f, nil
}

// wakeUps opens a listener and a notifier on dir, which log what keeps
// them from using it, once, and use it again when it is fixed.
func wakeUps(dir string, log *slog.Logger) (*wake.Listener, *wake.Notifier, error) {
	n, err := wake.NewNotifier(dir)
	if err != nil {
		return nil, nil, err
	}
	n.Log = log
	return wake.Start(dir, log), n, nil
}

// Close stops a feed Start began and releases its wake-ups; the store
// stays open.
func (f *Feed) Close() error {
	if f.stop != nil {
		f.stop()
		<-f.done
	}
	var errs []error
	for _, c := range f.closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}
