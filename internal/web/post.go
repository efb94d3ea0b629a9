package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"cgichat/internal/chat"
	"cgichat/internal/config"
	"cgichat/internal/hosting"
	"cgichat/internal/identity"
	"cgichat/internal/store"
	"cgichat/internal/tail"
	"cgichat/internal/wake"
)

// MaxBody is the largest request body post accepts, in bytes: the
// largest valid message — a text of chat.MaxTextLen characters, a nick of
// chat.MaxNickLen, a room of chat.MaxRoomLen — in the worst encoding the
// accepted types allow, plus room for the field names, punctuation, white
// space and a few ignored fields. No character takes more than 12 bytes
// in either type: one outside the Basic Multilingual Plane as a JSON
// surrogate-pair escape (\ud83d\ude00) or as percent-encoded UTF-8
// (%F0%9F%98%80).
const MaxBody = (chat.MaxTextLen+chat.MaxNickLen+chat.MaxRoomLen)*maxBytesPerChar + bodySlack

const (
	maxBytesPerChar = 12
	bodySlack       = 1 << 10
)

// Content types post accepts.
const (
	typeForm = "application/x-www-form-urlencoded"
	typeJSON = "application/json"
)

// NewPost returns the post program's App.
func NewPost(env hosting.Env) *App { return newApp(buildPost, env) }

// pruneEvery: one post in this many applies the retention rules.
const pruneEvery = 100

// postHandler checks a message, stores it and wakes the streams.
type postHandler struct {
	store *store.Store
	ids   *identity.Keeper
	wake  *wake.Notifier
	tails *tail.Dir // nil: none
	log   *slog.Logger
}

func buildPost(ctx context.Context, db config.Database, env hosting.Env) (instance, error) {
	o, err := openStore(ctx, db, env)
	if err != nil {
		return nil, err
	}
	n, err := wake.NewNotifier(db.WakeDir)
	if err != nil {
		o.store.Close()
		return nil, err
	}
	n.Log = env.Log
	return &postHandler{store: o.store, ids: o.ids, wake: n, tails: o.tails, log: env.Log}, nil
}

func (h *postHandler) db() *store.Store { return h.store }

func (h *postHandler) Close() error {
	return errors.Join(h.wake.Close(), h.store.Close())
}

// serve handles POST cgi-bin/post: 201 with the stored message, or an
// error status with nothing stored.
func (h *postHandler) serve(w http.ResponseWriter, r *http.Request, cfg config.Config) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r, h.log, http.MethodPost)
		return
	}
	fe := readFrontEnd(r, hosting.Vars(r, nil), cfg.TrustedPrefixes())
	if err := checkSite(r, cfg, fe); err != nil {
		fail(w, r, h.log, err)
		return
	}
	if h.serveAction(w, r, cfg, fe) {
		return
	}
	in, err := readPost(r)
	if err != nil {
		fail(w, r, h.log, err)
		return
	}
	idemKey, err := idempotencyKey(r.Header)
	if err != nil {
		fail(w, r, h.log, err)
		return
	}
	ctx := r.Context()
	claims := h.ids.Read(r)
	key := identity.Key(in.nick)
	addr := clientID(r, cfg)
	res, err := h.store.Post(ctx, store.PostInput{
		Room: in.room, Nick: in.nick, Text: in.text,
		NickKey:     key,
		Held:        claims.Held(key),
		Addr:        addr,
		AddrHash:    h.ids.AddrHash(addr),
		Rate:        cfg.RateLimit,
		NickHold:    cfg.NickHold,
		Key:         idemKey,
		KeyWindow:   KeyWindow,
		NewRooms:    cfg.RoomsPerDay,
		NewRoomsPer: roomsWindow,
	})
	if err != nil {
		fail(w, r, h.log, err)
		return
	}
	// The message is committed (a repeat too: its first answer may have
	// been lost before the wake-up).
	h.changed(ctx, in.room)
	if res.NewClaim != 0 {
		http.SetCookie(w, h.ids.Cookie(claims, identity.Claim{Key: key, Issued: res.NewClaim}, fe.https))
	}
	if res.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	} else if res.Message.ID%pruneEvery == 0 {
		h.prune(ctx, in.room, cfg)
	}
	writeJSON(w, http.StatusCreated, res.Message)
}

// KeyWindow is how long post remembers an Idempotency-Key: a repeat within
// it is answered with the first post's message. A day covers a page's
// retries and a phone that comes back online the next morning.
const KeyWindow = 24 * time.Hour

// roomsWindow is the "day" of CHAT_ROOMS_PER_DAY: the last 24 hours.
const roomsWindow = 24 * time.Hour

// trimmedFor is how long the trim mark of a room that holds no messages
// any more is kept, for readers coming back to it.
const trimmedFor = 7 * 24 * time.Hour

// The length of an Idempotency-Key: enough for a random key not to be
// guessed (a UUID is 36), little to store.
const (
	minKeyLen = 16
	maxKeyLen = 128
)

// idempotencyKey reads the request's Idempotency-Key (the IETF httpapi
// draft): one Structured Field string, "8e03978e-40d5-43e8-bc93-6894a57f9324",
// or the same without quotes as many clients send it, of minKeyLen to
// maxKeyLen letters, digits and -_.:~+/=. It returns "" when there is none.
func idempotencyKey(h http.Header) (string, error) {
	vs := h.Values("Idempotency-Key")
	if len(vs) == 0 {
		return "", nil
	}
	// A web server joins repeated headers with commas (CGI has one
	// variable per name), which no key holds.
	if len(vs) > 1 || strings.Contains(vs[0], ",") {
		return "", chat.Errorf(chat.EInvalid, "Send one Idempotency-Key per request.")
	}
	v := strings.TrimSpace(vs[0])
	if q, ok := strings.CutPrefix(v, `"`); ok {
		if v, ok = strings.CutSuffix(q, `"`); !ok {
			v = "" // an unterminated string
		}
	}
	bad := chat.Errorf(chat.EInvalid, "The Idempotency-Key must be a quoted string of %d to %d letters, digits and -_.:~+/= characters, such as \"8e03978e-40d5-43e8-bc93-6894a57f9324\".", minKeyLen, maxKeyLen)
	if len(v) < minKeyLen || len(v) > maxKeyLen {
		return "", bad
	}
	for _, c := range []byte(v) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.:~+/=", c) >= 0) {
			return "", bad
		}
	}
	return v, nil
}

// prune applies the retention rules, during normal operation: the message
// is stored already, so a failure is only logged.
func (h *postHandler) prune(ctx context.Context, room string, cfg config.Config) {
	keep := store.Retention{
		Messages:   cfg.KeepMessages,
		Days:       cfg.KeepDays,
		TotalBytes: int64(cfg.KeepTotalMB) << 20,
		// With CHAT_NICK_HOURS=0 no claim holds: forget them soon.
		ClaimIdle:     max(cfg.NickHold, time.Minute),
		KeysFor:       KeyWindow,
		RoomStartsFor: roomsWindow,
		TrimmedFor:    trimmedFor,
	}
	n, err := h.store.Prune(ctx, room, keep, 2*cfg.RateLimit.Per)
	if err != nil {
		h.log.Warn("pruning failed", "err", err)
		return
	}
	if n > 0 {
		h.log.Info("pruned old messages", "room", room, "rows", n)
		if _, err := h.wake.Notify(); err != nil {
			h.log.Warn("wake-up failed", "err", err)
		}
	}
	// Retention prunes every room, without tombstones, and a new secret
	// renames every file: no tail file may go on showing what is gone.
	if h.tails != nil {
		if err := h.tails.Sweep(ctx); err != nil {
			h.log.Warn("the tail files could not all be brought up to date", "err", err)
		}
	}
}

// postInput is a validated post body.
type postInput struct {
	room, nick, text string
}

// readPost reads and validates the body: its type, its size, its fields.
func readPost(r *http.Request) (postInput, error) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (ct != typeForm && ct != typeJSON) {
		return postInput{}, chat.Errorf(chat.EUnsupported, "Send the message as %s or %s.", typeJSON, typeForm)
	}
	tooLarge := chat.Errorf(chat.ETooLarge, "The request is too large: at most %d bytes.", MaxBody)
	// Refuse before reading when the length is announced.
	if r.ContentLength > MaxBody {
		return postInput{}, tooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return postInput{}, chat.Errorf(chat.EInvalid, "The request body could not be read.")
	}
	if len(body) > MaxBody {
		return postInput{}, tooLarge
	}
	if r.ContentLength > 0 && int64(len(body)) < r.ContentLength {
		return postInput{}, chat.Errorf(chat.EInvalid, "The request body did not arrive whole: %d of the %d bytes announced. (Apache mod_fcgid passes on no body that an HTTP/2 client sends without a length; such a client should send Content-Length.)", len(body), r.ContentLength)
	}
	var fields map[string]string
	if ct == typeJSON {
		fields, err = jsonFields(body)
	} else {
		fields, err = formFields(body)
	}
	if err != nil {
		return postInput{}, err
	}
	var in postInput
	if in.room, err = chat.ValidRoom(fields["room"]); err != nil {
		return postInput{}, err
	}
	if in.nick, err = chat.ValidNick(fields["nick"]); err != nil {
		return postInput{}, err
	}
	if in.text, err = chat.ValidText(fields["text"]); err != nil {
		return postInput{}, err
	}
	return in, nil
}

// postFields are the fields post reads; others are ignored.
var postFields = map[string]bool{"room": true, "nick": true, "text": true}

// jsonFields reads a JSON object whose known fields must be strings and
// appear once.
func jsonFields(body []byte) (map[string]string, error) {
	notObject := chat.Errorf(chat.EInvalid, "The body must be a JSON object such as {\"nick\":\"ada\",\"text\":\"hello\"}.")
	if !utf8.Valid(body) {
		return nil, chat.Errorf(chat.EInvalid, "The body is not valid UTF-8.")
	}
	// encoding/json would make a lone surrogate U+FFFD without a word.
	if u, ok := loneSurrogate(body); ok {
		return nil, chat.Errorf(chat.EInvalid, "The body is not valid UTF-8: the escape \\u%04x is half of a surrogate pair and stands for no character.", u)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, notObject
	}
	fields := make(map[string]string)
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, notObject
		}
		key, _ := tok.(string)
		if seen[key] {
			return nil, chat.Errorf(chat.EInvalid, "The field %q appears more than once.", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, notObject
		}
		if !postFields[key] {
			continue
		}
		var s string
		if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return nil, chat.Errorf(chat.EInvalid, "The field %q must be a string.", key)
		}
		fields[key] = s
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, notObject
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, chat.Errorf(chat.EInvalid, "The body must hold one JSON object and nothing after it.")
	}
	return fields, nil
}

// loneSurrogate returns the first \uXXXX escape in a JSON text that is a
// UTF-16 surrogate outside a high-low pair: it encodes no character, just
// as the same code point in raw UTF-8 is invalid. Backslashes occur in
// valid JSON only inside strings, so the whole text is scanned.
func loneSurrogate(body []byte) (uint16, bool) {
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		u, ok := escapeAt(body, i)
		if !ok {
			i++ // another escape: skip its character, which may be a backslash
			continue
		}
		i += 5
		switch {
		case 0xD800 <= u && u < 0xDC00:
			if low, ok := escapeAt(body, i+1); ok && 0xDC00 <= low && low < 0xE000 {
				i += 6
				continue
			}
			return u, true
		case 0xDC00 <= u && u < 0xE000:
			return u, true
		}
	}
	return 0, false
}

// escapeAt returns the code unit of the \uXXXX escape at body[i:].
func escapeAt(body []byte, i int) (uint16, bool) {
	if i+6 > len(body) || body[i] != '\\' || body[i+1] != 'u' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(body[i+2:i+6]), 16, 16)
	return uint16(n), err == nil
}

// formFields reads a URL-encoded form whose known fields appear once.
func formFields(body []byte) (map[string]string, error) {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, chat.Errorf(chat.EInvalid, "The form data is malformed.")
	}
	fields := make(map[string]string)
	for key, vs := range vals {
		if !postFields[key] {
			continue
		}
		if len(vs) > 1 {
			return nil, chat.Errorf(chat.EInvalid, "The field %q appears more than once.", key)
		}
		fields[key] = vs[0]
	}
	return fields, nil
}
