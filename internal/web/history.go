package web

import (
	"net/http"
	"strconv"

	"cgichat/internal/chat"
)

// Pages of older history (GET cgi-bin/stream?room=R&before=ID&limit=N).
const (
	defaultHistoryPage = 100
	maxHistoryPage     = 200
)

// historyPage is the answer to a request for older history.
type historyPage struct {
	// Messages are the messages before the id asked for, oldest first,
	// as the stream's message events carry them; deleted ones are left
	// out.
	Messages []chat.Message `json:"messages"`
	// More is false when the page reaches the beginning of the room (or
	// of what retention kept).
	More bool `json:"more"`
}

// serveHistory answers a stream request with "before": one page of older
// messages as JSON, at once, like a post — never a stream, in every
// hosting mode, so it costs no stream's place.
func (h *streamHandler) serveHistory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	room, err := chat.ValidRoom(q.Get("room"))
	if err != nil {
		fail(w, r, h.log, err)
		return
	}
	before, err := strconv.ParseInt(q.Get("before"), 10, 64)
	if err != nil || before < 1 {
		fail(w, r, h.log, chat.Errorf(chat.EInvalid, "before must be the id of a message (a whole number from 1), not %q.", q.Get("before")))
		return
	}
	limit := defaultHistoryPage
	if q.Has("limit") {
		s := q.Get("limit")
		limit, err = strconv.Atoi(s)
		if err != nil || limit < 1 || limit > maxHistoryPage {
			fail(w, r, h.log, chat.Errorf(chat.EInvalid, "limit must be a whole number from 1 to %d, not %q.", maxHistoryPage, s))
			return
		}
	}
	ms, more, err := h.store.Before(r.Context(), room, before, limit)
	if err != nil {
		fail(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, historyPage{Messages: ms, More: more})
}
