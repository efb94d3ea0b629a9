package store

import (
	"context"

	"cgichat/internal/chat"

	"github.com/jmoiron/sqlx"
)

// The columns of chat.Message, in its field order.
const messageColumns = `id, room, nick, text, created_at, kind, COALESCE(target, 0) AS target`

// insertMessage adds a message; the database assigns its id (SQLite's
// AUTOINCREMENT, or the servers' trigger on counters).
var insertMessage = stmt{sqlite: `INSERT INTO messages (room, nick, text, created_at) VALUES (?, ?, ?, ?)`}

// Insert stores a message whose fields are already valid and returns it
// with its id and time. Once Insert returns nil the message is committed.
func (s *Store) Insert(ctx context.Context, room, nick, text string) (chat.Message, error) {
	var m chat.Message
	err := s.withTx(ctx, lockMessages, func(tx *sqlx.Tx) (err error) {
		m, err = s.insert(ctx, tx, room, nick, text)
		return err
	})
	return m, err
}

// insert adds a message within tx.
func (s *Store) insert(ctx context.Context, tx *sqlx.Tx, room, nick, text string) (chat.Message, error) {
	m := chat.Message{Room: room, Nick: nick, Text: text, Time: s.Now().UTC().Format(chat.TimeFormat), Kind: chat.KindMessage}
	var err error
	if m.ID, err = s.backend.insertMessage(ctx, s, tx, m.Room, m.Nick, m.Text, m.Time); err != nil {
		return chat.Message{}, internal(err, "insert a message")
	}
	return m, nil
}

const selectLatest = `SELECT * FROM (
	SELECT ` + messageColumns + ` FROM messages WHERE room = ? AND kind = 'message' ORDER BY id DESC LIMIT ?
) AS latest ORDER BY id`

// Latest returns the last n messages of room, oldest first; tombstones are
// left out, since what they deleted is gone already.
func (s *Store) Latest(ctx context.Context, room string, n int) ([]chat.Message, error) {
	var ms []chat.Message
	if err := s.db.SelectContext(ctx, &ms, s.sql(selectLatest), room, n); err != nil {
		return nil, internal(err, "read the latest messages of %s", room)
	}
	return ms, nil
}

const selectRoomAfter = `SELECT ` + messageColumns + ` FROM messages WHERE room = ? AND id > ? ORDER BY id LIMIT ?`

// After returns up to limit rows of room (messages and tombstones) with ids
// above after, in order.
func (s *Store) After(ctx context.Context, room string, after int64, limit int) ([]chat.Message, error) {
	var ms []chat.Message
	if err := s.db.SelectContext(ctx, &ms, s.sql(selectRoomAfter), room, after, limit); err != nil {
		return nil, internal(err, "read messages of %s after %d", room, after)
	}
	return ms, nil
}

const selectAllAfter = `SELECT ` + messageColumns + ` FROM messages WHERE id > ? ORDER BY id LIMIT ?`

// AllAfter returns up to limit rows of every room (messages and tombstones)
// with ids above after, in order.
func (s *Store) AllAfter(ctx context.Context, after int64, limit int) ([]chat.Message, error) {
	var ms []chat.Message
	if err := s.db.SelectContext(ctx, &ms, s.sql(selectAllAfter), after, limit); err != nil {
		return nil, internal(err, "read messages after %d", after)
	}
	return ms, nil
}

const selectMaxID = `SELECT COALESCE(MAX(id), 0) FROM messages`

// MaxID returns the highest message id committed so far, or 0.
func (s *Store) MaxID(ctx context.Context) (int64, error) {
	var id int64
	if err := s.db.GetContext(ctx, &id, selectMaxID); err != nil {
		return 0, internal(err, "read the highest message id")
	}
	return id, nil
}

const selectSpan = `SELECT count(*), COALESCE(MAX(id), 0) FROM messages WHERE room = ? AND id > ?`

// Span returns how many rows of room (messages and tombstones) have ids
// above after, and the highest of them (0 when none).
func (s *Store) Span(ctx context.Context, room string, after int64) (n int, last int64, err error) {
	if err := s.db.QueryRowxContext(ctx, s.sql(selectSpan), room, after).Scan(&n, &last); err != nil {
		return 0, 0, internal(err, "count the rows of %s after %d", room, after)
	}
	return n, last, nil
}

const selectTail = `SELECT * FROM (
	SELECT ` + messageColumns + ` FROM messages WHERE room = ? ORDER BY id DESC LIMIT ?
) AS tail ORDER BY id`

// Tail returns the last n rows of room (messages and tombstones), oldest
// first.
func (s *Store) Tail(ctx context.Context, room string, n int) ([]chat.Message, error) {
	var ms []chat.Message
	if err := s.db.SelectContext(ctx, &ms, s.sql(selectTail), room, n); err != nil {
		return nil, internal(err, "read the last rows of %s", room)
	}
	return ms, nil
}
