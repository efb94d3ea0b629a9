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
	Addr  string
	// NickKey (Nick's key), Held (the Issued stamps of the reader's claims
	// on it) and NickHold decide whether Nick is the reader's to show: a
	// nick someone else holds is recorded as no nick.
	NickKey  string
	Held     []int64
	NickHold time.Duration
	// Cap is how many open streams one address may hold; 0 is no cap.
	Cap int
	// Stale is how long an open row may go unrenewed before it counts as
	// gone.
	Stale time.Duration
}

const (
	deleteStaleStreams = `DELETE FROM streams WHERE seen_at < ?`
	countOpenStreams   = `SELECT count(*) FROM streams WHERE addr = ? AND open = 1`
)

var insertStream = stmt{sqlite: `INSERT INTO streams (owner, room, nick, addr, seen_at) VALUES (?, ?, NULLIF(?, ''), ?, ?)`}

// OpenStream records a new stream and returns its row id, or refuses it
// when its address already holds Cap open streams.
func (s *Store) OpenStream(ctx context.Context, in StreamInput) (int64, error) {
	now := unix(s.Now())
	var id int64
	err := s.withTx(ctx, lockStreams, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, s.sql(deleteStaleStreams), now-in.Stale.Seconds()); err != nil {
			return fmt.Errorf("remove stale streams: %w", err)
		}
		if in.Cap > 0 {
			var n int
			if err := tx.GetContext(ctx, &n, s.sql(countOpenStreams), in.Addr); err != nil {
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
		var err error
		if id, err = s.backend.insertID(ctx, tx, s.dialect(insertStream), in.Owner, in.Room, nick, in.Addr, now); err != nil {
			return fmt.Errorf("record stream: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, internal(err, "open a stream")
	}
	return id, nil
}

const closeStream = `UPDATE streams SET open = 0, seen_at = ? WHERE id = ?`

// CloseStream marks a stream ended. Its row stays until it is stale, so a
// reader who reconnects (batch mode does so all the time) does not blink
// out of the presence list.
func (s *Store) CloseStream(ctx context.Context, id int64) error {
	defer s.lockWrites()()
	if _, err := s.db.ExecContext(ctx, s.sql(closeStream), unix(s.Now()), id); err != nil {
		return internal(err, "close stream %d", id)
	}
	return nil
}

const touchStreams = `UPDATE streams SET seen_at = ? WHERE owner = ? AND open = 1`

// TouchStreams renews every open stream row of owner.
func (s *Store) TouchStreams(ctx context.Context, owner string) error {
	defer s.lockWrites()()
	if _, err := s.db.ExecContext(ctx, s.sql(touchStreams), unix(s.Now()), owner); err != nil {
		return internal(err, "renew streams")
	}
	return nil
}

const selectPresence = `SELECT DISTINCT nick FROM streams
	WHERE room = ? AND nick IS NOT NULL AND seen_at >= ?`

// Presence returns the nicks reading room, those of streams renewed or
// ended within stale, in alphabetical order ignoring case (sorted here: the
// backends' collations differ).
func (s *Store) Presence(ctx context.Context, room string, stale time.Duration) ([]string, error) {
	nicks := []string{}
	if err := s.db.SelectContext(ctx, &nicks, s.sql(selectPresence), room, unix(s.Now())-stale.Seconds()); err != nil {
		return nil, internal(err, "read presence in %s", room)
	}
	slices.SortFunc(nicks, func(a, b string) int {
		return cmp.Or(strings.Compare(strings.ToLower(a), strings.ToLower(b)), strings.Compare(a, b))
	})
	return nicks, nil
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
