package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"cgichat/internal/chat"

	"github.com/jmoiron/sqlx"
)

// StreamInput describes a stream about to open.
type StreamInput struct {
	Owner string // the process's feed, which renews the row
	Room  string
	Nick  string // who is reading, for presence; may be empty
	// Reader is the page's id for this reader (random, kept across its
	// reconnects); "" for clients that send none. A reader's new stream
	// supersedes its older ones.
	Reader string
	// Host is the web host serving the stream; the budget counts per host.
	Host string
	Addr string
	// NickKey (Nick's key), Held (the Issued stamps of the reader's claims
	// on it) and NickHold decide whether Nick is the reader's to show: a
	// nick someone else holds is recorded as no nick.
	NickKey  string
	Held     []int64
	NickHold time.Duration
	// Cap is how many readers one address may hold: its open streams, and
	// the readers that polled within PollWindow; 0 is no cap.
	Cap int
	// Budget is how many live streams Host may hold at once; past it the
	// stream is granted as a poll. 0 is no budget.
	Budget int
	// Stale is how long an open row may go unrenewed before it counts as
	// gone; PollWindow how long a poll counts its reader as polling (and
	// present), longer than any poll interval.
	Stale      time.Duration
	PollWindow time.Duration
}

// A stream row's open is 1 while its request runs, 2 once its reader
// opened a newer stream (its process then ends it), 0 when it ended.

// StreamGrant is what OpenStream granted.
type StreamGrant struct {
	ID int64 // the stream's row
	// Poll: the host's budget is full; answer with what is pending and
	// end at once. Pollers is then how many readers the host answers so,
	// and PollCost what their polls took on average (0 when none is
	// known yet).
	Poll     bool
	Pollers  int
	PollCost time.Duration
	// PollsBusy is how many other polls of the host run at this moment:
	// what the host really holds for polls, slow machine and all.
	PollsBusy int
	// Superseded is how many older streams of the same reader were asked
	// to end (see Superseded).
	Superseded int
}

// pollInFlight is how long an open poll row counts as a poll running now:
// a poll answers at once, so an older open row is one whose process was
// killed before it could close it.
const pollInFlight = 10 * time.Second

// PollReserve returns how much of a budget is kept for polls: a quarter,
// so that the live streams leave room for the pollers' requests.
func PollReserve(budget int) int { return budget / 4 }

const (
	// A live stream is stale once unrenewed for Stale, any other row (a
	// poll's; a kind written by hand) once older than the poll window
	// too. Each term is a range of streams_kind_seen, so that opening a
	// stream reads the stale live rows and the few others, not all.
	deleteStaleStreams = `DELETE FROM streams WHERE (kind = 'live' AND seen_at < ?)
		OR (kind < 'live' AND seen_at < ?) OR (kind > 'live' AND seen_at < ?)`
	// An address's readers: its open live streams, and the readers that
	// polled within the poll window, but for the poll row of the reader
	// asking (its own, which it renews).
	countReaders = `SELECT count(*) FROM streams WHERE addr = ? AND id <> ?
		AND ((kind = 'live' AND open = 1) OR (kind = 'poll' AND seen_at >= ?))`
	countLiveStreams = `SELECT count(*) FROM streams WHERE host = ? AND open = 1 AND kind = 'live'`
	// A host's pollers, what their polls took, and how many of the
	// others' polls run now (open, renewed within pollInFlight).
	selectPollers = `SELECT count(*), COALESCE(AVG(cost), 0),
		COALESCE(SUM(CASE WHEN open = 1 AND id <> ? AND seen_at >= ? THEN 1 ELSE 0 END), 0)
		FROM streams WHERE kind = 'poll' AND host = ? AND seen_at >= ?`
	// A reader's older rows leave presence (its nick may have changed;
	// the new row lists it) and its open streams are asked to end.
	forgetReaderNick = `UPDATE streams SET nick = NULL WHERE reader = ?`
	supersedeReader  = `UPDATE streams SET open = 2, seen_at = ? WHERE reader = ? AND open = 1 AND kind = 'live'`
	// A reader's poll row is found by its id; the polls of clients that
	// send none share one row per address, room and nick.
	selectPollRow     = `SELECT id FROM streams WHERE reader = ? AND kind = 'poll'`
	selectAnonPollRow = `SELECT id FROM streams WHERE reader IS NULL AND kind = 'poll' AND addr = ? AND room = ? AND COALESCE(nick, '') = ?`
	renewPoll         = `UPDATE streams SET owner = ?, room = ?, nick = NULLIF(?, ''), host = ?, addr = ?, open = 1, seen_at = ? WHERE id = ?`
	forgetPoll        = `DELETE FROM streams WHERE id = ?`
)

var insertStream = stmt{sqlite: `INSERT INTO streams (owner, room, nick, reader, host, addr, kind, open, seen_at)
	VALUES (?, ?, NULLIF(?, ''), NULLIF(?, ''), ?, ?, ?, 1, ?)`}

// OpenStream records a new stream: it supersedes the reader's older
// streams, refuses the stream when its address already holds Cap readers
// (open streams and recent pollers), and grants it as a poll when the host's live streams fill the
// Budget but for its PollReserve.
func (s *Store) OpenStream(ctx context.Context, in StreamInput) (StreamGrant, error) {
	now := unix(s.Now())
	var g StreamGrant
	err := s.withTx(ctx, lockStreams, func(tx *sqlx.Tx) error {
		stale, old := now-in.Stale.Seconds(), now-max(in.Stale, in.PollWindow).Seconds()
		if _, err := tx.ExecContext(ctx, s.sql(deleteStaleStreams), stale, old, old); err != nil {
			return fmt.Errorf("remove stale streams: %w", err)
		}
		if in.Reader != "" {
			if _, err := tx.ExecContext(ctx, s.sql(forgetReaderNick), in.Reader); err != nil {
				return fmt.Errorf("supersede streams: %w", err)
			}
			res, err := tx.ExecContext(ctx, s.sql(supersedeReader), now, in.Reader)
			if err != nil {
				return fmt.Errorf("supersede streams: %w", err)
			}
			n, _ := res.RowsAffected()
			g.Superseded = int(n)
		}
		nick := in.Nick
		if nick != "" {
			mine, err := s.ownsNick(ctx, tx, in.Held, in.NickKey, s.Now(), in.NickHold)
			if err != nil {
				return err
			}
			if !mine {
				nick = "" // reads, but is not listed under another's nick
			}
		}
		pollRow, err := s.pollRow(ctx, tx, in, nick)
		if err != nil {
			return fmt.Errorf("find poll: %w", err)
		}
		if in.Cap > 0 {
			// Pollers are readers too: a flood of new reader ids is
			// refused here, not piled up among the host's pollers.
			var n int
			if err := tx.GetContext(ctx, &n, s.sql(countReaders), in.Addr, pollRow, now-max(in.Stale, in.PollWindow).Seconds()); err != nil {
				return fmt.Errorf("count streams: %w", err)
			}
			if n >= in.Cap {
				return &chat.Error{
					Code:       chat.ETooMany,
					Message:    fmt.Sprintf("Too many open streams from your address (at most %d). Close a chat tab or window and try again.", in.Cap),
					RetryAfter: 10 * time.Second,
				}
			}
		}
		if in.Budget > 0 {
			var n int
			if err := tx.GetContext(ctx, &n, s.sql(countLiveStreams), in.Host); err != nil {
				return fmt.Errorf("count live streams: %w", err)
			}
			g.Poll = n >= in.Budget-PollReserve(in.Budget)
		}
		switch {
		case g.Poll && pollRow != 0:
			// A reader's one poll row is renewed, so that it stays
			// present and counts once among the pollers.
			g.ID = pollRow
			_, err = tx.ExecContext(ctx, s.sql(renewPoll), in.Owner, in.Room, nick, in.Host, in.Addr, now, pollRow)
		case g.Poll:
			g.ID, err = s.backend.insertID(ctx, tx, s.dialect(insertStream),
				in.Owner, in.Room, nick, in.Reader, in.Host, in.Addr, "poll", now)
		default:
			// A reader who polled and now streams polls no more.
			if pollRow != 0 {
				if _, err := tx.ExecContext(ctx, s.sql(forgetPoll), pollRow); err != nil {
					return fmt.Errorf("record stream: %w", err)
				}
			}
			g.ID, err = s.backend.insertID(ctx, tx, s.dialect(insertStream),
				in.Owner, in.Room, nick, in.Reader, in.Host, in.Addr, "live", now)
		}
		if err != nil {
			return fmt.Errorf("record stream: %w", err)
		}
		if g.Poll {
			var cost float64
			if err := tx.QueryRowxContext(ctx, s.sql(selectPollers), g.ID, now-pollInFlight.Seconds(),
				in.Host, now-max(in.Stale, in.PollWindow).Seconds()).Scan(&g.Pollers, &cost, &g.PollsBusy); err != nil {
				return fmt.Errorf("count pollers: %w", err)
			}
			g.PollCost = time.Duration(cost * float64(time.Second))
		}
		return nil
	})
	if err != nil {
		return StreamGrant{}, internal(err, "open a stream")
	}
	return g, nil
}

// pollRow returns the id of the poll row the reader of in renews, 0 when
// it has none: its reader id's, or, for a client that sends none, the one
// its address shares in the room under its nick.
func (s *Store) pollRow(ctx context.Context, tx *sqlx.Tx, in StreamInput, nick string) (int64, error) {
	var id int64
	var err error
	if in.Reader != "" {
		err = tx.GetContext(ctx, &id, s.sql(selectPollRow), in.Reader)
	} else {
		err = tx.GetContext(ctx, &id, s.sql(selectAnonPollRow), in.Addr, in.Room, nick)
	}
	if noRows(err) {
		return 0, nil
	}
	return id, err
}

const selectSuperseded = `SELECT id FROM streams WHERE owner = ? AND open = 2`

// Superseded returns the rows of owner's streams whose readers opened a
// newer stream since: their processes should end them.
func (s *Store) Superseded(ctx context.Context, owner string) ([]int64, error) {
	var ids []int64
	if err := s.db.SelectContext(ctx, &ids, s.sql(selectSuperseded), owner); err != nil {
		return nil, internal(err, "read superseded streams")
	}
	return ids, nil
}

const closeStream = `UPDATE streams SET open = 0, seen_at = ?, cost = ? WHERE id = ?`

// CloseStream marks a stream ended, with what it cost (for a poll, how
// long it took). Its row stays until it is stale, so a reader who
// reconnects (batch mode does so all the time) does not blink out of the
// presence list.
func (s *Store) CloseStream(ctx context.Context, id int64, cost time.Duration) error {
	if err := s.exec(ctx, s.sql(closeStream), unix(s.Now()), cost.Seconds(), id); err != nil {
		return internal(err, "close stream %d", id)
	}
	return nil
}

const touchStreams = `UPDATE streams SET seen_at = ? WHERE owner = ? AND open = 1`

// TouchStreams renews every open stream row of owner.
func (s *Store) TouchStreams(ctx context.Context, owner string) error {
	if err := s.exec(ctx, s.sql(touchStreams), unix(s.Now()), owner); err != nil {
		return internal(err, "renew streams")
	}
	return nil
}

const selectPresence = `SELECT DISTINCT nick FROM streams
	WHERE room = ? AND nick IS NOT NULL AND (seen_at >= ? OR (kind = 'poll' AND seen_at >= ?))`

// Presence returns the nicks reading room, those of streams renewed or
// ended within stale and of polls within pollWindow, in alphabetical order
// ignoring case (sorted here: the backends' collations differ).
func (s *Store) Presence(ctx context.Context, room string, stale, pollWindow time.Duration) ([]string, error) {
	nicks := []string{}
	now := unix(s.Now())
	if err := s.db.SelectContext(ctx, &nicks, s.sql(selectPresence), room, now-stale.Seconds(), now-max(stale, pollWindow).Seconds()); err != nil {
		return nil, internal(err, "read presence in %s", room)
	}
	slices.SortFunc(nicks, func(a, b string) int {
		return cmp.Or(strings.Compare(strings.ToLower(a), strings.ToLower(b)), strings.Compare(a, b))
	})
	return nicks, nil
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
