package store

import (
	"context"
	"database/sql"
	"fmt"

	"cgichat/internal/chat"

	"github.com/jmoiron/sqlx"
)

// The columns of chat.Message, in its field order.
const messageColumns = `id, room, nick, text, created_at, kind, COALESCE(target, 0) AS target`

const insertMessage = `INSERT INTO messages (room, nick, text, created_at) VALUES (?, ?, ?, ?)`

// Insert stores a message whose fields are already valid and returns it
// with its id and time. Once Insert returns nil the message is committed.
func (s *Store) Insert(ctx context.Context, room, nick, text string) (chat.Message, error) {
	var m chat.Message
	err := s.withTx(ctx, func(tx *sqlx.Tx) (err error) {
		m, err = s.insert(ctx, tx, room, nick, text)
		return err
	})
	return m, err
}

// insert adds a message within tx.
func (s *Store) insert(ctx context.Context, tx *sqlx.Tx, room, nick, text string) (chat.Message, error) {
	m := chat.Message{Room: room, Nick: nick, Text: text, Time: s.Now().UTC().Format(chat.TimeFormat), Kind: chat.KindMessage}
	res, err := tx.ExecContext(ctx, insertMessage, m.Room, m.Nick, m.Text, m.Time)
	if err == nil {
		m.ID, err = res.LastInsertId()
	}
	if err != nil {
		return chat.Message{}, internal(err, "insert a message")
	}
	return m, nil
}

const selectLatest = `SELECT * FROM (
	SELECT ` + messageColumns + ` FROM messages WHERE room = ? AND kind = 'message' ORDER BY id DESC LIMIT ?
) ORDER BY id`

// Latest returns the last n messages of room, oldest first; tombstones are
// left out, since what they deleted is gone already.
func (s *Store) Latest(ctx context.Context, room string, n int) ([]chat.Message, error) {
	var ms []chat.Message
	if err := s.db.SelectContext(ctx, &ms, selectLatest, room, n); err != nil {
		return nil, internal(err, "read the latest messages of %s", room)
	}
	return ms, nil
}

const selectRoomAfter = `SELECT ` + messageColumns + ` FROM messages WHERE room = ? AND id > ? ORDER BY id LIMIT ?`

// After returns up to limit rows of room (messages and tombstones) with ids
// above after, in order.
func (s *Store) After(ctx context.Context, room string, after int64, limit int) ([]chat.Message, error) {
	var ms []chat.Message
	if err := s.db.SelectContext(ctx, &ms, selectRoomAfter, room, after, limit); err != nil {
		return nil, internal(err, "read messages of %s after %d", room, after)
	}
	return ms, nil
}

const selectAllAfter = `SELECT ` + messageColumns + ` FROM messages WHERE id > ? ORDER BY id LIMIT ?`

// AllAfter returns up to limit rows of every room (messages and tombstones)
// with ids above after, in order.
func (s *Store) AllAfter(ctx context.Context, after int64, limit int) ([]chat.Message, error) {
	var ms []chat.Message
	if err := s.db.SelectContext(ctx, &ms, selectAllAfter, after, limit); err != nil {
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

// Changes tells cheaply whether another connection has committed since the
// last look, through PRAGMA data_version on one connection it keeps.
type Changes struct {
	conn    *sql.Conn
	version int64
}

// Changes returns a change detector holding one connection of the pool
// until it is closed.
func (s *Store) Changes(ctx context.Context) (*Changes, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, internal(err, "reserve a connection for change detection")
	}
	c := &Changes{conn: conn}
	if _, err := c.Changed(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// Changed reports whether any other connection, in this process or another,
// committed since the previous call.
func (c *Changes) Changed(ctx context.Context) (bool, error) {
	var v int64
	if err := c.conn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v); err != nil {
		return false, internal(err, "read data_version")
	}
	changed := v != c.version
	c.version = v
	return changed, nil
}

// Close returns the connection to the pool.
func (c *Changes) Close() error {
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("store: close change detector: %w", err)
	}
	return nil
}
