package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/ratelimit"

	"github.com/jmoiron/sqlx"
)

// Moderation from the page: moderator keys (kept as hashes), the rate
// limit on tries of keys and codes, deleting, banning and releasing, and
// the moderation log that records each of them. The web layer decides who
// may do what; the store checks what the rows say (which message, whose
// claim) in the transaction that acts.

// Actions as the moderation log names them.
const (
	ActDelete       = "delete"
	ActBanNick      = "ban-nick"
	ActBanAddress   = "ban-address"
	ActReleaseNick  = "release-nick"
	ActUnbanNick    = "unban-nick"
	ActUnbanAddress = "unban-address"
	ActKeyCreated   = "key-created"
)

// Guess is one try of a moderator key or a code from a client: tries are
// rate-limited per client, right or wrong, in a bucket of their own.
type Guess struct {
	Addr string         // the client, as for the rate limit on posts
	Rate ratelimit.Rate // zero is off
}

// TakeGuess takes a token for one try from g's bucket, or refuses with
// ETooMany when it is empty.
func (s *Store) TakeGuess(ctx context.Context, g Guess) error {
	err := s.withTx(ctx, lockMessages, func(tx *sqlx.Tx) error {
		return s.takeTokens(ctx, tx, g.Rate, s.Now(), "guess:"+g.Addr)
	})
	var ce *chat.Error
	if errors.As(err, &ce) && ce.Code == chat.ETooMany {
		ce.Message = fmt.Sprintf("Too many tries of keys or codes from your address (at most %d in %s). Please wait a moment.", g.Rate.N, chat.Duration(g.Rate.Per))
	}
	return internal(err, "count a try of a key")
}

const (
	selectKeyLabel = `SELECT label FROM moderator_keys WHERE hash = ?`
	selectKeyHash  = `SELECT hash FROM moderator_keys WHERE label = ?`
	insertKey      = `INSERT INTO moderator_keys (label, hash, created_at) VALUES (?, ?, ?)`
	deleteKey      = `DELETE FROM moderator_keys WHERE label = ? AND hash = ?`
)

// ModeratorLabel returns the label of the key whose hash is hash, or ""
// when there is none (never made, or revoked).
func (s *Store) ModeratorLabel(ctx context.Context, hash string) (string, error) {
	var label string
	err := s.db.GetContext(ctx, &label, s.sql(selectKeyLabel), hash)
	if noRows(err) {
		return "", nil
	}
	return label, internal(err, "look up a moderator key")
}

// ModeratorKeyHash returns the hash of the key labelled label, or false
// when there is none.
func (s *Store) ModeratorKeyHash(ctx context.Context, label string) (string, bool, error) {
	var hash string
	err := s.db.GetContext(ctx, &hash, s.sql(selectKeyHash), label)
	if noRows(err) {
		return "", false, nil
	}
	return hash, err == nil, internal(err, "look up a moderator key")
}

// AddModeratorKey stores the hash of a new key labelled label, and says in
// the moderation log how it was made (how). A label already in use is a
// conflict: one key per label, so that one SQL line revokes it.
func (s *Store) AddModeratorKey(ctx context.Context, label, hash, how string) error {
	err := s.withTx(ctx, lockMessages, func(tx *sqlx.Tx) error {
		var have string
		err := tx.GetContext(ctx, &have, s.sql(selectKeyHash), label)
		if err == nil {
			return chat.Errorf(chat.EConflict, "A moderator key labelled %q exists already. Choose another label, or revoke that key first: DELETE FROM moderator_keys WHERE label = '%s';", label, label)
		}
		if !noRows(err) {
			return err
		}
		now := s.stamp()
		if _, err := tx.ExecContext(ctx, s.sql(insertKey), label, hash, now); err != nil {
			return fmt.Errorf("store the key: %w", err)
		}
		return s.logAction(ctx, tx, LogEntry{Moderator: label, Action: ActKeyCreated, Detail: how})
	})
	return internal(err, "add a moderator key")
}

// RemoveModeratorKey revokes the key labelled label if its hash is hash.
func (s *Store) RemoveModeratorKey(ctx context.Context, label, hash string) error {
	_, err := s.db.ExecContext(ctx, s.sql(deleteKey), label, hash)
	return internal(err, "remove a moderator key")
}

// stamp returns now as the tables keep times.
func (s *Store) stamp() string { return s.Now().UTC().Format(chat.TimeFormat) }

// Target is a message a moderation action refers to, found as a message
// or, once deleted, as its tombstone (which keeps its room, nick and
// address hash).
type Target struct {
	ID       int64
	Room     string
	Nick     string
	Time     string // when it was posted; "" once deleted
	Deleted  bool
	AddrHash string // "" for messages from before address hashes were kept
}

const (
	selectTarget = `SELECT id, room, nick, created_at, COALESCE(addr_hash, '') AS addr_hash
		FROM messages WHERE id = ? AND kind = 'message'`
	// A tombstone comes after its message, so the search starts at the id.
	selectTombstone = `SELECT target AS id, room, nick, '' AS created_at, COALESCE(addr_hash, '') AS addr_hash
		FROM messages WHERE id > ? AND kind = 'delete' AND target = ?`
)

// targetRow is a row of selectTarget or selectTombstone.
type targetRow struct {
	ID       int64  `db:"id"`
	Room     string `db:"room"`
	Nick     string `db:"nick"`
	Time     string `db:"created_at"`
	AddrHash string `db:"addr_hash"`
}

// getter is a pool or a transaction.
type getter interface {
	GetContext(ctx context.Context, dest any, query string, args ...any) error
}

// target finds message id, or its tombstone when deleted is allowed.
func (s *Store) target(ctx context.Context, q getter, id int64, deleted bool) (Target, error) {
	var row targetRow
	err := q.GetContext(ctx, &row, s.sql(selectTarget), id)
	if noRows(err) && deleted {
		err = q.GetContext(ctx, &row, s.sql(selectTombstone), id, id)
		if err == nil {
			return Target{ID: row.ID, Room: row.Room, Nick: row.Nick, Deleted: true, AddrHash: row.AddrHash}, nil
		}
	}
	if noRows(err) {
		return Target{}, chat.Errorf(chat.ENotFound, "Message %d is not in the chat: deleted already, removed by retention, or never posted.", id)
	}
	if err != nil {
		return Target{}, fmt.Errorf("find message %d: %w", id, err)
	}
	return Target{ID: row.ID, Room: row.Room, Nick: row.Nick, Time: row.Time, AddrHash: row.AddrHash}, nil
}

// Message returns message id, or its tombstone's record of it when it was
// deleted.
func (s *Store) Message(ctx context.Context, id int64) (Target, error) {
	t, err := s.target(ctx, s.db, id, true)
	return t, internal(err, "find message %d", id)
}

// DeleteInput says which message to delete and by whose right: a
// moderator's (Moderator, a key's label), or else its poster's, who must
// hold the current claim on its nick (Held, the Issued stamps of the
// client's claims on NickKey, the key of the message's nick) and ask within
// Window of posting it.
type DeleteInput struct {
	ID        int64
	Moderator string
	NickKey   string
	Held      []int64
	Window    time.Duration
}

// selfCommitting is a backend whose deleteMessage statement commits by
// itself (MySQL's procedure), so it runs outside any transaction.
type selfCommitting interface{ deleteCommits() }

// Delete deletes a message with the statement a moderator uses in the
// database's shell, so it leaves the same tombstone that open pages act
// on, and records it in the moderation log. It returns the message.
func (s *Store) Delete(ctx context.Context, in DeleteInput) (Target, error) {
	var t Target
	check := func(tx *sqlx.Tx) (err error) {
		if t, err = s.target(ctx, tx, in.ID, false); err != nil {
			return err
		}
		if in.Moderator == "" {
			return s.checkOwn(ctx, tx, in, t)
		}
		return nil
	}
	entry := func() LogEntry {
		e := LogEntry{Moderator: in.Moderator, Action: ActDelete, Message: t.ID, Nick: t.Nick}
		if in.Moderator == "" {
			e.Detail = "by its poster"
		}
		return e
	}
	del := s.backend.deleteMessage()
	var err error
	if _, ok := s.backend.(selfCommitting); ok {
		// Check, delete, then log: the procedure cannot run inside the
		// transaction that checks.
		err = s.withTx(ctx, lockMessages, check)
		if err == nil {
			_, err = s.db.ExecContext(ctx, s.sql(del), in.ID)
		}
		if err == nil {
			err = s.withTx(ctx, lockMessages, func(tx *sqlx.Tx) error { return s.logAction(ctx, tx, entry()) })
		}
	} else {
		err = s.withTx(ctx, lockMessages, func(tx *sqlx.Tx) error {
			if err := check(tx); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, s.sql(del), in.ID); err != nil {
				return fmt.Errorf("delete: %w", err)
			}
			return s.logAction(ctx, tx, entry())
		})
	}
	if err != nil {
		return Target{}, internal(err, "delete message %d", in.ID)
	}
	return t, nil
}

// checkOwn refuses a poster's deletion of t unless the client holds the
// current claim on its nick, that claim was made before t was posted, and
// t is younger than the window. A claim made later is another poster's
// (the nick was released by a moderator, or, with CHAT_NICK_HOURS=0,
// taken by the next to post under it): its holder did not post t.
func (s *Store) checkOwn(ctx context.Context, tx *sqlx.Tx, in DeleteInput, t Target) error {
	if in.NickKey != s.opts.nickKey(t.Nick) {
		return chat.Errorf(chat.EForbidden, "You may delete only your own messages.")
	}
	st, err := s.nickState(ctx, tx, in.Held, in.NickKey, s.Now(), 0)
	if err != nil {
		return err
	}
	if st != nickHeld {
		return chat.Errorf(chat.EForbidden, "You may delete only your own messages: this one was posted under a nick this browser does not hold.")
	}
	var issued int64
	if err := tx.GetContext(ctx, &issued, s.sql(selectClaimIssued), in.NickKey); err != nil {
		return fmt.Errorf("read nick claim: %w", err)
	}
	posted, err := time.Parse(chat.TimeFormat, t.Time)
	// Messages keep milliseconds; a claim is stamped in nanoseconds just
	// before the post that made it.
	if err == nil && posted.UnixMilli() < issued/int64(time.Millisecond) {
		return chat.Errorf(chat.EForbidden, "You may delete only your own messages: this one was posted under the nick before this browser took it.")
	}
	if err != nil || s.Now().Sub(posted) > in.Window {
		return chat.Errorf(chat.EForbidden, "Your own messages can be deleted for %s after posting; this one is older. A moderator can still delete it.", chat.Duration(in.Window))
	}
	return nil
}

// BanInput is a ban from the page: of a nick, or of the address of a
// message's poster. Until is when it ends; the zero time bans for ever.
type BanInput struct {
	Moderator string
	ID        int64  // the message it refers to; 0 for a nick named outright
	Nick      string // the nick, when ID is 0
	Until     time.Time
	Reason    string
}

const (
	insertNickBan    = `INSERT INTO bans (nick, until, reason, created_at) VALUES (?, ?, NULLIF(?, ''), ?)`
	insertAddressBan = `INSERT INTO address_bans (addr_hash, message, nick, until, reason, moderator, created_at)
		VALUES (?, ?, ?, ?, NULLIF(?, ''), ?, ?)`
)

// until returns a ban's end as the tables keep it, NULL for ever.
func until(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(chat.TimeFormat)
}

// banDetail says in the log how long a ban lasts, and why.
func banDetail(t time.Time, reason string) string {
	d := "for ever"
	if !t.IsZero() {
		d = "until " + t.UTC().Format(chat.TimeFormat)
	}
	if reason != "" {
		d += "; " + reason
	}
	return d
}

// nickOf returns the nick in.ID was posted under, or in.Nick.
func (s *Store) nickOf(ctx context.Context, tx *sqlx.Tx, in BanInput) (string, error) {
	if in.ID == 0 {
		return in.Nick, nil
	}
	t, err := s.target(ctx, tx, in.ID, true)
	return t.Nick, err
}

// posterOf returns message in.ID, or its tombstone, with the address hash
// of its poster, which a message from before address hashes lacks.
func (s *Store) posterOf(ctx context.Context, tx *sqlx.Tx, in BanInput) (Target, error) {
	t, err := s.target(ctx, tx, in.ID, true)
	if err == nil && t.AddrHash == "" {
		err = chat.Errorf(chat.EConflict, "Message %d was posted before cgichat kept what an address ban needs, so its poster's address cannot be banned. Ban the nick instead, or the address in the database's shell.", in.ID)
	}
	return t, err
}

// moderate runs one moderator's action in a transaction: act does it and
// returns the moderation log's entry for it, which is written in the same
// transaction and returned.
func (s *Store) moderate(ctx context.Context, what string, act func(tx *sqlx.Tx) (LogEntry, error)) (LogEntry, error) {
	var e LogEntry
	err := s.withTx(ctx, lockMessages, func(tx *sqlx.Tx) (err error) {
		if e, err = act(tx); err != nil {
			return err
		}
		return s.logAction(ctx, tx, e)
	})
	return e, internal(err, "%s", what)
}

// BanNick bans a nick — and every nick a reader would take for it — from
// posting until in.Until, and logs it. It returns the log entry.
func (s *Store) BanNick(ctx context.Context, in BanInput) (LogEntry, error) {
	return s.moderate(ctx, "ban a nick", func(tx *sqlx.Tx) (LogEntry, error) {
		nick, err := s.nickOf(ctx, tx, in)
		if err != nil {
			return LogEntry{}, err
		}
		if _, err := tx.ExecContext(ctx, s.sql(insertNickBan), nick, until(in.Until), in.Reason, s.stamp()); err != nil {
			return LogEntry{}, fmt.Errorf("store the ban: %w", err)
		}
		return LogEntry{Moderator: in.Moderator, Action: ActBanNick, Message: in.ID, Nick: nick, Detail: banDetail(in.Until, in.Reason)}, nil
	})
}

// BanAddress bans the client that posted message in.ID (as the rate limit
// knows it: an IPv4 address or an IPv6 /64) until in.Until, by the keyed
// hash the message keeps, and logs it. It returns the log entry.
func (s *Store) BanAddress(ctx context.Context, in BanInput) (LogEntry, error) {
	return s.moderate(ctx, "ban an address", func(tx *sqlx.Tx) (LogEntry, error) {
		t, err := s.posterOf(ctx, tx, in)
		if err != nil {
			return LogEntry{}, err
		}
		_, err = tx.ExecContext(ctx, s.sql(insertAddressBan), t.AddrHash, t.ID, t.Nick, until(in.Until), in.Reason, in.Moderator, s.stamp())
		if err != nil {
			return LogEntry{}, fmt.Errorf("store the ban: %w", err)
		}
		return LogEntry{Moderator: in.Moderator, Action: ActBanAddress, Message: t.ID, Nick: t.Nick, Detail: banDetail(in.Until, in.Reason)}, nil
	})
}

const (
	selectNickBans    = `SELECT nick FROM bans WHERE nick IS NOT NULL`
	deleteNickBan     = `DELETE FROM bans WHERE nick = ?`
	deleteAddressBans = `DELETE FROM address_bans WHERE addr_hash = ?`
	deleteNickClaim   = `DELETE FROM nick_claims WHERE nick_key = ?`
)

// UnbanNick lifts every ban on a nick a reader would take for in's nick
// (in.ID's, or in.Nick), and logs how many there were.
func (s *Store) UnbanNick(ctx context.Context, in BanInput) (LogEntry, error) {
	return s.moderate(ctx, "lift a nick's bans", func(tx *sqlx.Tx) (LogEntry, error) {
		nick, err := s.nickOf(ctx, tx, in)
		if err != nil {
			return LogEntry{}, err
		}
		var banned []string
		if err := tx.SelectContext(ctx, &banned, selectNickBans); err != nil {
			return LogEntry{}, fmt.Errorf("read bans: %w", err)
		}
		key, n := s.opts.nickKey(nick), int64(0)
		for _, b := range banned {
			if s.opts.nickKey(b) != key {
				continue
			}
			res, err := tx.ExecContext(ctx, s.sql(deleteNickBan), b)
			if err != nil {
				return LogEntry{}, fmt.Errorf("lift a ban: %w", err)
			}
			k, _ := res.RowsAffected()
			n += k
		}
		return LogEntry{Moderator: in.Moderator, Action: ActUnbanNick, Message: in.ID, Nick: nick, Detail: lifted(n)}, nil
	})
}

// UnbanAddress lifts every ban by message on the address of message
// in.ID's poster, and logs how many there were.
func (s *Store) UnbanAddress(ctx context.Context, in BanInput) (LogEntry, error) {
	return s.moderate(ctx, "lift an address's bans", func(tx *sqlx.Tx) (LogEntry, error) {
		t, err := s.posterOf(ctx, tx, in)
		if err != nil {
			return LogEntry{}, err
		}
		res, err := tx.ExecContext(ctx, s.sql(deleteAddressBans), t.AddrHash)
		if err != nil {
			return LogEntry{}, fmt.Errorf("lift address bans: %w", err)
		}
		n, _ := res.RowsAffected()
		return LogEntry{Moderator: in.Moderator, Action: ActUnbanAddress, Message: t.ID, Nick: t.Nick, Detail: lifted(n)}, nil
	})
}

func lifted(n int64) string {
	if n == 1 {
		return "1 ban lifted"
	}
	return fmt.Sprintf("%d bans lifted", n)
}

// ReleaseNick frees a nick at once: its claim is removed, so its holder's
// claim stops working and the next to post under it owns it. It logs
// whether the nick was held.
func (s *Store) ReleaseNick(ctx context.Context, in BanInput) (LogEntry, error) {
	return s.moderate(ctx, "release a nick", func(tx *sqlx.Tx) (LogEntry, error) {
		nick, err := s.nickOf(ctx, tx, in)
		if err != nil {
			return LogEntry{}, err
		}
		res, err := tx.ExecContext(ctx, s.sql(deleteNickClaim), s.opts.nickKey(nick))
		if err != nil {
			return LogEntry{}, fmt.Errorf("remove the claim: %w", err)
		}
		detail := "released"
		if n, _ := res.RowsAffected(); n == 0 {
			detail = "was not held"
		}
		return LogEntry{Moderator: in.Moderator, Action: ActReleaseNick, Message: in.ID, Nick: nick, Detail: detail}, nil
	})
}

const selectAddressBan = `SELECT COALESCE(until, '') FROM address_bans
	WHERE addr_hash = ? AND (until IS NULL OR until > ?) ORDER BY until IS NULL DESC, until DESC LIMIT 1`

// checkAddressBans refuses a client whose address hash a ban by message
// names. An empty hash (a client the caller knows no hash for) passes.
func (s *Store) checkAddressBans(ctx context.Context, tx *sqlx.Tx, hash string, now time.Time) error {
	if hash == "" {
		return nil
	}
	var end string
	err := tx.GetContext(ctx, &end, s.sql(selectAddressBan), hash, now.UTC().Format(chat.TimeFormat))
	if noRows(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read address bans: %w", err)
	}
	if end == "" {
		return chat.Errorf(chat.EForbidden, "You may not post in this chat.")
	}
	return chat.Errorf(chat.EForbidden, "You may not post in this chat until %s.", end)
}

const setAddrHash = `UPDATE messages SET addr_hash = ? WHERE id = ?`

// keepAddrHash stores the poster's address hash with message id.
func (s *Store) keepAddrHash(ctx context.Context, tx *sqlx.Tx, id int64, hash string) error {
	if hash == "" {
		return nil
	}
	if _, err := tx.ExecContext(ctx, s.sql(setAddrHash), hash, id); err != nil {
		return fmt.Errorf("store the address hash: %w", err)
	}
	return nil
}

// LogEntry is one line of the moderation log: who (a key's label; "" for a
// poster deleting their own message) did what to which message (0: none)
// or nick, when, with what detail.
type LogEntry struct {
	ID        int64  `db:"id" json:"id"`
	Time      string `db:"created_at" json:"time"`
	Moderator string `db:"moderator" json:"moderator,omitempty"`
	Action    string `db:"action" json:"action"`
	Message   int64  `db:"message" json:"message,omitempty"`
	Nick      string `db:"nick" json:"nick,omitempty"`
	Detail    string `db:"detail" json:"detail,omitempty"`
}

const (
	insertLog = `INSERT INTO moderation_log (created_at, moderator, action, message, nick, detail)
		VALUES (?, NULLIF(?, ''), ?, NULLIF(?, 0), NULLIF(?, ''), NULLIF(?, ''))`
	selectLog = `SELECT id, created_at, COALESCE(moderator, '') AS moderator, action, COALESCE(message, 0) AS message,
		COALESCE(nick, '') AS nick, COALESCE(detail, '') AS detail
		FROM moderation_log WHERE id < ? ORDER BY id DESC LIMIT ?`
)

// logAction adds e to the moderation log, stamped now.
func (s *Store) logAction(ctx context.Context, tx *sqlx.Tx, e LogEntry) error {
	if _, err := tx.ExecContext(ctx, s.sql(insertLog), s.stamp(), e.Moderator, e.Action, e.Message, e.Nick, e.Detail); err != nil {
		return fmt.Errorf("write the moderation log: %w", err)
	}
	return nil
}

// Log returns up to limit entries of the moderation log with ids below
// before (0: from the newest), newest first, and whether older ones exist.
func (s *Store) Log(ctx context.Context, before int64, limit int) ([]LogEntry, bool, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	es := []LogEntry{}
	if err := s.db.SelectContext(ctx, &es, s.sql(selectLog), before, limit+1); err != nil {
		return nil, false, internal(err, "read the moderation log")
	}
	more := len(es) > limit
	if more {
		es = es[:limit]
	}
	return es, more, nil
}
