package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"cgichat/internal/chat"
	"cgichat/internal/config"
	"cgichat/internal/identity"
	"cgichat/internal/ratelimit"
	"cgichat/internal/store"
)

// Actions are the requests to POST cgi-bin/post that are not messages: a
// JSON object with an "action" field, such as {"action":"delete","id":42}.
// Moderators' actions need the session a moderator key opens (login);
// the others serve every reader (docs/contract.md#actions).

// action is one kind of action: whether it needs a moderator, and what
// it does, returning the body of its 200.
type action struct {
	moderator bool
	do        func(h *postHandler, c *actionCall) (any, error)
}

// actions are every action, by name.
var actions = map[string]action{
	"about":         {do: (*postHandler).about},
	"whoami":        {do: (*postHandler).whoami},
	"login":         {do: (*postHandler).login},
	"logout":        {do: (*postHandler).logout},
	"delete":        {do: (*postHandler).delete},
	"check-nick":    {do: (*postHandler).checkNick},
	"transfer":      {do: (*postHandler).transfer},
	"redeem":        {do: (*postHandler).redeem},
	"ban-nick":      {moderator: true, do: (*postHandler).banNick},
	"ban-address":   {moderator: true, do: (*postHandler).banAddress},
	"unban-nick":    {moderator: true, do: (*postHandler).unbanNick},
	"unban-address": {moderator: true, do: (*postHandler).unbanAddress},
	"release-nick":  {moderator: true, do: (*postHandler).releaseNick},
	"log":           {moderator: true, do: (*postHandler).readLog},
}

// actionNames lists the actions for error messages.
func actionNames() string {
	var names []string
	for n := range actions {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// actionRequest is an action's body. Fields an action does not use are
// ignored.
type actionRequest struct {
	Action string  `json:"action"`
	ID     *int64  `json:"id"`     // a message
	Nick   *string `json:"nick"`   // a nick
	Key    string  `json:"key"`    // login: a moderator key, or a set-up code
	Code   string  `json:"code"`   // redeem: a transfer code
	For    string  `json:"for"`    // bans: hour, day or ever
	Reason string  `json:"reason"` // bans: why, for the log
	Before int64   `json:"before"` // log: entries below this id
	Limit  *int    `json:"limit"`  // log: how many
}

// actionCall is one action being served.
type actionCall struct {
	w      http.ResponseWriter
	r      *http.Request
	cfg    config.Config
	fe     frontEnd
	req    actionRequest
	claims identity.Claims
	// moderator is the label of the key whose session the request
	// carries, "" without a valid one.
	moderator string
}

// guess is the rate limit on tries of keys and codes for the caller.
func (c *actionCall) guess() store.Guess {
	return store.Guess{Addr: clientID(c.r, c.cfg), Rate: guessRate(c.cfg)}
}

// defaultGuessRate limits tries of keys and codes where posts are not
// limited (CHAT_RATE_LIMIT=off): CHAT_RATE_LIMIT's default.
var defaultGuessRate = ratelimit.Rate{N: 5, Per: 10 * time.Second}

// guessRate is the rate of tries of keys and codes per client: the rate
// of posts, but never off.
func guessRate(cfg config.Config) ratelimit.Rate {
	if cfg.RateLimit.Off() {
		return defaultGuessRate
	}
	return cfg.RateLimit
}

// serveAction serves r as an action if its body is a JSON object with an
// "action" field, and reports whether it did; otherwise r is left for the
// message path with its body as it was.
func (h *postHandler) serveAction(w http.ResponseWriter, r *http.Request, cfg config.Config, fe frontEnd) bool {
	body, ok := peekAction(r)
	if !ok {
		return false
	}
	req, err := parseAction(body)
	if err != nil {
		fail(w, r, h.log, err)
		return true
	}
	act, known := actions[req.Action]
	if !known {
		fail(w, r, h.log, chat.Errorf(chat.EInvalid, "There is no action %q; the actions are %s.", req.Action, actionNames()))
		return true
	}
	c := &actionCall{w: w, r: r, cfg: cfg, fe: fe, req: req, claims: h.ids.Read(r)}
	if c.moderator, err = h.moderatorOf(r); err != nil {
		fail(w, r, h.log, err)
		return true
	}
	if act.moderator && c.moderator == "" {
		fail(w, r, h.log, chat.Errorf(chat.EForbidden, "Only moderators may do this: log in with a moderator key first."))
		return true
	}
	out, err := act.do(h, c)
	if err != nil {
		fail(w, r, h.log, err)
		return true
	}
	writeJSON(w, http.StatusOK, out)
	return true
}

// peekAction reads r's body if it is JSON that names an action, and
// returns it. Otherwise it puts back what it read, so that the message
// path reads the same body, and returns false.
func peekAction(r *http.Request) ([]byte, bool) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != typeJSON || r.ContentLength > MaxBody {
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
	if err != nil || len(body) > MaxBody {
		return nil, false
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return nil, false
	}
	if _, ok := fields["action"]; !ok {
		return nil, false
	}
	return body, true
}

// parseAction reads an action's body, refusing what would be refused in a
// message's: invalid UTF-8, half a surrogate pair, a field of the wrong
// type.
func parseAction(body []byte) (actionRequest, error) {
	var req actionRequest
	if !utf8.Valid(body) {
		return req, chat.Errorf(chat.EInvalid, "The body is not valid UTF-8.")
	}
	if u, ok := loneSurrogate(body); ok {
		return req, chat.Errorf(chat.EInvalid, "The body is not valid UTF-8: the escape \\u%04x is half of a surrogate pair and stands for no character.", u)
	}
	if err := json.Unmarshal(body, &req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return req, chat.Errorf(chat.EInvalid, "The field %q must be %s.", te.Field, jsonKind(te.Type.Kind().String()))
		}
		return req, chat.Errorf(chat.EInvalid, "The body must be a JSON object such as {\"action\":\"delete\",\"id\":42}.")
	}
	return req, nil
}

// jsonKind names a Go kind as JSON calls it.
func jsonKind(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"):
		return "a whole number"
	case kind == "string" || kind == "ptr":
		return "a string"
	}
	return "of another type"
}

// moderatorOf returns the label of the moderator whose session r carries,
// or "" when it carries none, or one whose key was revoked or replaced.
func (h *postHandler) moderatorOf(r *http.Request) (string, error) {
	s, ok := h.ids.ReadModerator(r, h.store.Now())
	if !ok {
		return "", nil
	}
	hash, found, err := h.store.ModeratorKeyHash(r.Context(), s.Label)
	if err != nil || !found || !h.ids.SessionValid(s, hash) {
		return "", err
	}
	return s.Label, nil
}

// messageID returns the message an action names, which it needs.
func (c *actionCall) messageID() (int64, error) {
	if c.req.ID == nil || *c.req.ID < 1 {
		return 0, chat.Errorf(chat.EInvalid, "Name the message with \"id\", its id (a whole number from 1).")
	}
	return *c.req.ID, nil
}

// nickOrMessage returns the nick an action names outright, or the message
// whose poster's nick it means: one of them, not both.
func (c *actionCall) nickOrMessage() (id int64, nick string, err error) {
	switch {
	case c.req.Nick != nil && c.req.ID != nil:
		return 0, "", chat.Errorf(chat.EInvalid, "Name either a message (\"id\") or a nick (\"nick\"), not both.")
	case c.req.Nick != nil:
		nick, err = chat.ValidNick(*c.req.Nick)
		return 0, nick, err
	case c.req.ID != nil:
		id, err = c.messageID()
		return id, "", err
	}
	return 0, "", chat.Errorf(chat.EInvalid, "Name a message (\"id\") or a nick (\"nick\").")
}
