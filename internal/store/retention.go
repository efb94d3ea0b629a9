package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"cgichat/internal/chat"

	"github.com/jmoiron/sqlx"
)

// Retention says what to keep; a zero field keeps everything.
type Retention struct {
	Messages int // per room
	Days     int
	// TotalBytes bounds the size of all messages together, as the table
	// sizes counts them (the bytes of room, nick, text and addr_hash, and
	// 64 a row): past it the oldest go first, whatever their room.
	TotalBytes int64
	// Claims unused for ClaimIdle (the time a nick stays its owner's) are
	// forgotten: they hold nothing any more.
	ClaimIdle time.Duration
	// KeysFor is how long the Idempotency-Keys of posts are kept;
	// RoomStartsFor how long who started a room counts.
	KeysFor       time.Duration
	RoomStartsFor time.Duration
	// TrimmedFor is how long a room's trim mark is kept once the room
	// holds no rows (a reader away longer learns nothing of the trim).
	TrimmedFor time.Duration
}

// pruneRows bounds how many of the oldest rows one Prune reads to meet
// TotalBytes, so that a bound lowered far below what a database holds is
// met over several prunes, none holding the write lock long.
const pruneRows = 20000

// oldestPage is how many rows one read of the oldest rows returns.
const oldestPage = 1000

const (
	selectCountCutoff = `SELECT id FROM messages WHERE room = ? AND kind = 'message'
		ORDER BY id DESC LIMIT 1 OFFSET ?`
	selectAgeCutoffs  = `SELECT room, max(id) AS id FROM messages WHERE created_at < ? GROUP BY room`
	selectRoomCutoffs = `SELECT room, max(id) AS id FROM messages WHERE id <= ? GROUP BY room`
	markPruned        = `UPDATE messages SET kind = 'pruned' WHERE room = ? AND id <= ? AND kind = 'message'`
	deletePruned      = `DELETE FROM messages WHERE room = ? AND id <= ?`
	deleteFullBuckets = `DELETE FROM rate_buckets WHERE updated < ?`
	deleteIdleClaims  = `DELETE FROM nick_claims WHERE last_used < ?`
	deleteOldKeys     = `DELETE FROM post_keys WHERE stored_at < ?`
	deleteOldStarts   = `DELETE FROM room_starts WHERE started_at < ?`
	deleteOldTrims    = `DELETE FROM trimmed WHERE trimmed_at < ?
		AND NOT EXISTS (SELECT 1 FROM messages WHERE messages.room = trimmed.room)`
)

// rowBytes is the size of a row of messages as the table sizes counts it
// (schema.sql, step 6), in each backend's dialect.
var rowBytes = stmt{
	sqlite:   `length(CAST(room AS BLOB)) + length(CAST(nick AS BLOB)) + length(CAST(text AS BLOB)) + COALESCE(length(addr_hash), 0) + 64`,
	mysql:    `LENGTH(room) + LENGTH(nick) + LENGTH(text) + COALESCE(LENGTH(addr_hash), 0) + 64`,
	postgres: `octet_length(room) + octet_length(nick) + octet_length(text) + COALESCE(octet_length(addr_hash), 0) + 64`,
}

// withRowBytes returns q for each backend with {bytes} replaced by its
// rowBytes.
func withRowBytes(q string) stmt {
	return stmt{
		sqlite:   strings.ReplaceAll(q, "{bytes}", rowBytes.sqlite),
		mysql:    strings.ReplaceAll(q, "{bytes}", rowBytes.mysql),
		postgres: strings.ReplaceAll(q, "{bytes}", rowBytes.postgres),
	}
}

var (
	// selectOldest reads the oldest rows after an id, with their size.
	selectOldest = withRowBytes(`SELECT id, {bytes} AS bytes FROM messages WHERE id > ? ORDER BY id LIMIT ?`)
	// selectUncounted sums the rows sizes has not counted yet.
	selectUncounted = withRowBytes(`SELECT COALESCE(sum({bytes}), 0) AS bytes, COALESCE(max(id), 0) AS last
		FROM messages WHERE id > ?`)
)

const (
	selectSizes = `SELECT bytes, through FROM sizes WHERE name = 'messages'`
	countSizes  = `UPDATE sizes SET bytes = bytes + ?, through = ? WHERE name = 'messages'`
)

var upsertTrimmed = stmt{
	sqlite: `INSERT INTO trimmed (room, through, trimmed_at) VALUES (?, ?, ?)
		ON CONFLICT (room) DO UPDATE SET through = max(through, excluded.through), trimmed_at = excluded.trimmed_at`,
	mysql: `INSERT INTO trimmed (room, through, trimmed_at) VALUES (?, ?, ?)
		ON DUPLICATE KEY UPDATE through = GREATEST(through, VALUES(through)), trimmed_at = VALUES(trimmed_at)`,
	postgres: `INSERT INTO trimmed (room, through, trimmed_at) VALUES (?, ?, ?)
		ON CONFLICT (room) DO UPDATE SET through = GREATEST(trimmed.through, excluded.through), trimmed_at = excluded.trimmed_at`,
}

// Prune applies the retention rules: it removes room's messages beyond the
// newest r.Messages, every room's messages older than r.Days, and the
// oldest messages of all rooms while they are more than r.TotalBytes, with
// their tombstones, leaving no new tombstones; ids are never reused. It
// also forgets rate buckets idle long enough to be full again, and the
// claims, keys, room starts and trim marks the rules let go. It returns
// how many messages it removed.
func (s *Store) Prune(ctx context.Context, room string, r Retention, bucketIdle time.Duration) (int64, error) {
	var removed int64
	now := s.Now()
	err := s.withTx(ctx, lockMessages, func(tx *sqlx.Tx) error {
		cutoffs := map[string]int64{}
		if r.Messages > 0 {
			var id int64
			err := tx.GetContext(ctx, &id, s.sql(selectCountCutoff), room, r.Messages)
			if err != nil && !noRows(err) {
				return fmt.Errorf("find the count cutoff: %w", err)
			}
			cutoffs[room] = id
		}
		if r.Days > 0 {
			before := now.Add(-time.Duration(r.Days) * 24 * time.Hour).UTC().Format(chat.TimeFormat)
			if err := s.roomCutoffs(ctx, tx, cutoffs, selectAgeCutoffs, before); err != nil {
				return fmt.Errorf("find the age cutoffs: %w", err)
			}
		}
		total, err := s.countSizes(ctx, tx)
		if err != nil {
			return fmt.Errorf("count the size of new messages: %w", err)
		}
		if r.TotalBytes > 0 && total > r.TotalBytes {
			if err := s.totalCutoffs(ctx, tx, cutoffs, total-r.TotalBytes); err != nil {
				return fmt.Errorf("find the cutoffs of the total: %w", err)
			}
		}
		for rm, id := range cutoffs {
			if id == 0 {
				continue
			}
			if _, err := tx.ExecContext(ctx, s.sql(markPruned), rm, id); err != nil {
				return fmt.Errorf("mark pruned rows: %w", err)
			}
			res, err := tx.ExecContext(ctx, s.sql(deletePruned), rm, id)
			if err != nil {
				return fmt.Errorf("delete pruned rows: %w", err)
			}
			n, _ := res.RowsAffected()
			removed += n
			if _, err := tx.ExecContext(ctx, s.dialect(upsertTrimmed), rm, id, unix(now)); err != nil {
				return fmt.Errorf("record the trim: %w", err)
			}
		}
		forget := []struct {
			what  string
			query string
			after time.Duration
			arg   func(time.Time) any
		}{
			{"idle rate buckets", deleteFullBuckets, bucketIdle, func(t time.Time) any { return unix(t) }},
			{"idle nick claims", deleteIdleClaims, r.ClaimIdle, func(t time.Time) any { return t.UTC().Format(chat.TimeFormat) }},
			{"old Idempotency-Keys", deleteOldKeys, r.KeysFor, func(t time.Time) any { return unix(t) }},
			{"old room starts", deleteOldStarts, r.RoomStartsFor, func(t time.Time) any { return unix(t) }},
			{"the trim marks of empty rooms", deleteOldTrims, r.TrimmedFor, func(t time.Time) any { return unix(t) }},
		}
		for _, f := range forget {
			if f.after <= 0 {
				continue
			}
			if _, err := tx.ExecContext(ctx, s.sql(f.query), f.arg(now.Add(-f.after))); err != nil {
				return fmt.Errorf("forget %s: %w", f.what, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, internal(err, "prune")
	}
	return removed, nil
}

// roomCutoffs raises cutoffs to the highest id per room that query, with
// arg, returns.
func (s *Store) roomCutoffs(ctx context.Context, tx *sqlx.Tx, cutoffs map[string]int64, query string, arg any) error {
	var rows []struct {
		Room string `db:"room"`
		ID   int64  `db:"id"`
	}
	if err := tx.SelectContext(ctx, &rows, s.sql(query), arg); err != nil {
		return err
	}
	for _, row := range rows {
		cutoffs[row.Room] = max(cutoffs[row.Room], row.ID)
	}
	return nil
}

// uncounted is what sizes has not counted yet: the rows after through.
type uncounted struct {
	Bytes int64 `db:"bytes"`
	Last  int64 `db:"last"`
}

// countSizes adds the rows posted since the last count to sizes and
// returns the size of all messages.
func (s *Store) countSizes(ctx context.Context, tx *sqlx.Tx) (int64, error) {
	var counted struct {
		Bytes   int64 `db:"bytes"`
		Through int64 `db:"through"`
	}
	if err := tx.GetContext(ctx, &counted, selectSizes); err != nil {
		return 0, err
	}
	var news uncounted
	if err := tx.GetContext(ctx, &news, s.dialect(selectUncounted), counted.Through); err != nil {
		return 0, err
	}
	if news.Last == 0 {
		return counted.Bytes, nil
	}
	if _, err := tx.ExecContext(ctx, s.sql(countSizes), news.Bytes, news.Last); err != nil {
		return 0, err
	}
	return counted.Bytes + news.Bytes, nil
}

// totalCutoffs raises cutoffs so that removing every row up to them takes
// excess bytes off the messages: the oldest rows go first, at most
// pruneRows of them per call.
func (s *Store) totalCutoffs(ctx context.Context, tx *sqlx.Tx, cutoffs map[string]int64, excess int64) error {
	var through int64
	for read := 0; excess > 0 && read < pruneRows; {
		var rows []struct {
			ID    int64 `db:"id"`
			Bytes int64 `db:"bytes"`
		}
		if err := tx.SelectContext(ctx, &rows, s.dialect(selectOldest), through, oldestPage); err != nil {
			return err
		}
		for _, row := range rows {
			if excess <= 0 {
				break
			}
			through, excess = row.ID, excess-row.Bytes
			read++
		}
		if len(rows) < oldestPage {
			break
		}
	}
	if through == 0 {
		return nil
	}
	return s.roomCutoffs(ctx, tx, cutoffs, selectRoomCutoffs, through)
}

// TotalBytes returns the size of all messages as CHAT_KEEP_TOTAL_MB counts
// it, the rows not counted yet included.
func (s *Store) TotalBytes(ctx context.Context) (int64, error) {
	var counted struct {
		Bytes   int64 `db:"bytes"`
		Through int64 `db:"through"`
	}
	var news uncounted
	err := s.db.GetContext(ctx, &counted, selectSizes)
	if err == nil {
		err = s.db.GetContext(ctx, &news, s.dialect(selectUncounted), counted.Through)
	}
	if err != nil {
		return 0, internal(err, "read the size of the messages")
	}
	return counted.Bytes + news.Bytes, nil
}

const selectTrimmed = `SELECT COALESCE((SELECT through FROM trimmed WHERE room = ?), 0)`

// TrimmedThrough returns the highest id of room removed by pruning, or 0.
func (s *Store) TrimmedThrough(ctx context.Context, room string) (int64, error) {
	var id int64
	if err := s.db.GetContext(ctx, &id, s.sql(selectTrimmed), room); err != nil {
		return 0, internal(err, "read the trim of %s", room)
	}
	return id, nil
}
