package store

import (
	"context"
	"fmt"
	"time"

	"cgichat/internal/chat"

	"github.com/jmoiron/sqlx"
)

// Retention says what to keep; a zero field keeps everything.
type Retention struct {
	Messages int // per room
	Days     int
}

const (
	selectCountCutoff = `SELECT id FROM messages WHERE room = ? AND kind = 'message'
		ORDER BY id DESC LIMIT 1 OFFSET ?`
	selectAgeCutoffs  = `SELECT room, max(id) AS id FROM messages WHERE created_at < ? GROUP BY room`
	markPruned        = `UPDATE messages SET kind = 'pruned' WHERE room = ? AND id <= ? AND kind = 'message'`
	deletePruned      = `DELETE FROM messages WHERE room = ? AND id <= ?`
	deleteFullBuckets = `DELETE FROM rate_buckets WHERE updated < ?`
)

var upsertTrimmed = stmt{
	sqlite: `INSERT INTO trimmed (room, through) VALUES (?, ?)
		ON CONFLICT (room) DO UPDATE SET through = max(through, excluded.through)`,
	mysql: `INSERT INTO trimmed (room, through) VALUES (?, ?)
		ON DUPLICATE KEY UPDATE through = GREATEST(through, VALUES(through))`,
	postgres: `INSERT INTO trimmed (room, through) VALUES (?, ?)
		ON CONFLICT (room) DO UPDATE SET through = GREATEST(trimmed.through, excluded.through)`,
}

// Prune applies the retention rules: it removes room's messages beyond the
// newest r.Messages, and every room's messages older than r.Days, with
// their tombstones, leaving no new tombstones; ids are never reused. It
// also forgets rate buckets idle long enough to be full again. It returns
// how many rows it removed.
func (s *Store) Prune(ctx context.Context, room string, r Retention, bucketIdle time.Duration) (int64, error) {
	var removed int64
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
			before := s.Now().Add(-time.Duration(r.Days) * 24 * time.Hour).UTC().Format(chat.TimeFormat)
			var rows []struct {
				Room string `db:"room"`
				ID   int64  `db:"id"`
			}
			if err := tx.SelectContext(ctx, &rows, s.sql(selectAgeCutoffs), before); err != nil {
				return fmt.Errorf("find the age cutoffs: %w", err)
			}
			for _, row := range rows {
				cutoffs[row.Room] = max(cutoffs[row.Room], row.ID)
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
			if _, err := tx.ExecContext(ctx, s.dialect(upsertTrimmed), rm, id); err != nil {
				return fmt.Errorf("record the trim: %w", err)
			}
		}
		if bucketIdle > 0 {
			if _, err := tx.ExecContext(ctx, s.sql(deleteFullBuckets), unix(s.Now())-bucketIdle.Seconds()); err != nil {
				return fmt.Errorf("forget idle rate buckets: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, internal(err, "prune")
	}
	return removed, nil
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
