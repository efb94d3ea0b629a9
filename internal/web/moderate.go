package web

import (
	"context"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"cgichat/internal/chat"
	"cgichat/internal/identity"
	"cgichat/internal/store"
)

// OwnDeleteWindow is how long after posting a message its poster may
// delete it, holding its nick's current claim.
const OwnDeleteWindow = 10 * time.Minute

// whoamiResult is the answer to whoami.
type whoamiResult struct {
	// Moderator is the label of the key the browser is logged in with,
	// or null.
	Moderator *string `json:"moderator"`
	// OwnDeleteSeconds is OwnDeleteWindow; TransferSeconds how long a
	// transfer code lasts.
	OwnDeleteSeconds int `json:"ownDeleteSeconds"`
	TransferSeconds  int `json:"transferSeconds"`
}

func sessionOf(label string) whoamiResult {
	r := whoamiResult{OwnDeleteSeconds: int(OwnDeleteWindow / time.Second), TransferSeconds: int(TransferLife / time.Second)}
	if label != "" {
		r.Moderator = &label
	}
	return r
}

// whoami says whether the browser is logged in as a moderator, and the
// windows the page shows.
func (h *postHandler) whoami(c *actionCall) (any, error) { return sessionOf(c.moderator), nil }

// loginResult is the answer to login: the session's label, and, when the
// key was made just now from the set-up file, the key itself, shown this
// once.
type loginResult struct {
	whoamiResult
	Key     string `json:"key,omitempty"`
	Warning string `json:"warning,omitempty"`
}

// login opens a moderator session for the key in "key", sent this once:
// the browser keeps the session in an HttpOnly cookie. A set-up code (the
// code in the set-up file, setup.go) makes a new key first. Every try
// counts against the rate limit on guesses, before anything is compared.
func (h *postHandler) login(c *actionCall) (any, error) {
	key := strings.TrimSpace(c.req.Key)
	if key == "" {
		return nil, chat.Errorf(chat.EInvalid, "Send the moderator key as \"key\".")
	}
	ctx := c.r.Context()
	if err := h.store.TakeGuess(ctx, c.guess()); err != nil {
		return nil, err
	}
	hash := identity.ModeratorKeyHash(key)
	label, err := h.store.ModeratorLabel(ctx, hash)
	if err != nil {
		return nil, err
	}
	var res loginResult
	if label == "" {
		var ok bool
		if res, hash, ok, err = h.setUp(c, key); err != nil {
			return nil, err
		}
		if !ok {
			return nil, chat.Errorf(chat.EForbidden, "That is not a moderator key.")
		}
		label = *res.Moderator
	}
	http.SetCookie(c.w, h.ids.ModeratorCookie(label, hash, h.store.Now(), c.fe.https))
	res.whoamiResult = sessionOf(label)
	return res, nil
}

// logout ends the browser's moderator session.
func (h *postHandler) logout(c *actionCall) (any, error) {
	http.SetCookie(c.w, identity.EndModeratorCookie(c.fe.https))
	return sessionOf(""), nil
}

// deleteResult is the answer to delete.
type deleteResult struct {
	Deleted int64  `json:"deleted"`
	Room    string `json:"room"`
}

// delete deletes message "id": any message for a moderator; otherwise
// only the caller's own, holding its nick's current claim, within
// OwnDeleteWindow of posting. Open pages learn of it from the delete
// event its tombstone makes.
func (h *postHandler) delete(c *actionCall) (any, error) {
	id, err := c.messageID()
	if err != nil {
		return nil, err
	}
	ctx := c.r.Context()
	in := store.DeleteInput{ID: id, Moderator: c.moderator, Window: OwnDeleteWindow}
	if c.moderator == "" {
		m, err := h.store.Message(ctx, id)
		if err != nil {
			return nil, err
		}
		if m.Deleted {
			return nil, chat.Errorf(chat.ENotFound, "Message %d is deleted already.", id)
		}
		in.NickKey = identity.Key(m.Nick)
		in.Held = c.claims.Held(in.NickKey)
	}
	t, err := h.store.Delete(ctx, in)
	if err != nil {
		return nil, err
	}
	h.changed(ctx, t.Room)
	return deleteResult{Deleted: t.ID, Room: t.Room}, nil
}

// changed wakes the streams after room changed (a post, a deletion, a
// pruning) and rewrites its tail file. The change is committed: a failed
// wake-up only delays it until the streams' next poll, a tail file not
// written until the room's next poll.
func (h *postHandler) changed(ctx context.Context, room string) {
	if _, err := h.wake.Notify(); err != nil {
		h.log.Warn("wake-up failed", "err", err)
	}
	if h.tails != nil {
		if err := h.tails.Refresh(ctx, room); err != nil {
			h.log.Warn("the room's tail file could not be written", "err", err)
		}
	}
}

// logResult is the answer to a moderator's action other than delete and
// log: the line it wrote in the moderation log.
type logResult struct {
	Log store.LogEntry `json:"log"`
}

// banFor reads "for": how long a ban lasts from now.
func (h *postHandler) banFor(c *actionCall) (time.Time, error) {
	now := h.store.Now()
	switch c.req.For {
	case "hour":
		return now.Add(time.Hour), nil
	case "day":
		return now.Add(24 * time.Hour), nil
	case "ever":
		return time.Time{}, nil
	}
	return time.Time{}, chat.Errorf(chat.EInvalid, "Say how long the ban lasts: \"for\" is \"hour\", \"day\" or \"ever\".")
}

// maxReasonLen bounds the reason a moderator gives for a ban.
const maxReasonLen = 200

// banInput reads a ban: the message or nick, how long, and why.
func (h *postHandler) banInput(c *actionCall, byMessage bool) (store.BanInput, error) {
	in := store.BanInput{Moderator: c.moderator}
	var err error
	if byMessage {
		in.ID, err = c.messageID()
	} else {
		in.ID, in.Nick, err = c.nickOrMessage()
	}
	if err != nil {
		return in, err
	}
	reason := strings.TrimSpace(c.req.Reason)
	if utf8.RuneCountInString(reason) > maxReasonLen || strings.ContainsFunc(reason, unicode.IsControl) {
		return in, chat.Errorf(chat.EInvalid, "A reason is at most %d characters on one line.", maxReasonLen)
	}
	in.Reason = reason
	return in, nil
}

// banNick bans the nick of message "id", or "nick", "for" an hour, a day
// or ever: every nick a reader would take for it is refused.
func (h *postHandler) banNick(c *actionCall) (any, error) {
	in, err := h.banInput(c, false)
	if err == nil {
		in.Until, err = h.banFor(c)
	}
	if err != nil {
		return nil, err
	}
	e, err := h.store.BanNick(c.r.Context(), in)
	return logResult{e}, err
}

// banAddress bans the poster of message "id" by address, "for" an hour,
// a day or ever, without the address being known to anyone: the message
// keeps only its keyed hash.
func (h *postHandler) banAddress(c *actionCall) (any, error) {
	in, err := h.banInput(c, true)
	if err == nil {
		in.Until, err = h.banFor(c)
	}
	if err != nil {
		return nil, err
	}
	e, err := h.store.BanAddress(c.r.Context(), in)
	return logResult{e}, err
}

// unbanNick lifts the bans on the nick of message "id", or "nick".
func (h *postHandler) unbanNick(c *actionCall) (any, error) {
	in, err := h.banInput(c, false)
	if err != nil {
		return nil, err
	}
	e, err := h.store.UnbanNick(c.r.Context(), in)
	return logResult{e}, err
}

// unbanAddress lifts the bans on the address of message "id"'s poster.
func (h *postHandler) unbanAddress(c *actionCall) (any, error) {
	in, err := h.banInput(c, true)
	if err != nil {
		return nil, err
	}
	e, err := h.store.UnbanAddress(c.r.Context(), in)
	return logResult{e}, err
}

// releaseNick frees the nick of message "id", or "nick", at once: its
// holder's claim stops working.
func (h *postHandler) releaseNick(c *actionCall) (any, error) {
	in, err := h.banInput(c, false)
	if err != nil {
		return nil, err
	}
	e, err := h.store.ReleaseNick(c.r.Context(), in)
	return logResult{e}, err
}

// Pages of the moderation log.
const (
	defaultLogPage = 50
	maxLogPage     = 200
)

// logPage is the answer to log.
type logPage struct {
	Entries []store.LogEntry `json:"entries"`
	More    bool             `json:"more"`
}

// readLog returns the moderation log, newest first: "limit" entries (1–200,
// default 50) with ids below "before" (default: from the newest).
func (h *postHandler) readLog(c *actionCall) (any, error) {
	limit := defaultLogPage
	if c.req.Limit != nil {
		limit = *c.req.Limit
	}
	if limit < 1 || limit > maxLogPage || c.req.Before < 0 {
		return nil, chat.Errorf(chat.EInvalid, "\"limit\" is a whole number from 1 to %d and \"before\" an id of the log.", maxLogPage)
	}
	es, more, err := h.store.Log(c.r.Context(), c.req.Before, limit)
	return logPage{Entries: es, More: more}, err
}
