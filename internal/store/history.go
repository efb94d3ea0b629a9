package store

import (
	"context"

	"cgichat/internal/chat"
)

const selectBefore = `SELECT * FROM (
	SELECT ` + messageColumns + ` FROM messages WHERE room = ? AND kind = 'message' AND id < ? ORDER BY id DESC LIMIT ?
) AS page ORDER BY id`

// Before returns up to limit messages of room with ids below before,
// oldest first, and whether older ones remain: the page of history a
// reader scrolling up asks for. Tombstones are left out, as in Latest.
func (s *Store) Before(ctx context.Context, room string, before int64, limit int) ([]chat.Message, bool, error) {
	ms := []chat.Message{}
	// One more than asked for tells whether there is more.
	if err := s.db.SelectContext(ctx, &ms, s.sql(selectBefore), room, before, limit+1); err != nil {
		return nil, false, internal(err, "read the messages of %s before %d", room, before)
	}
	more := len(ms) > limit
	if more {
		ms = ms[1:]
	}
	return ms, more, nil
}
