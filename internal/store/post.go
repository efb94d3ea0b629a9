package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/ratelimit"

	"github.com/jmoiron/sqlx"
)

// PostInput is a valid message with what the checks before storing it need.
type PostInput struct {
	Room, Nick, Text string
	// NickKey is the form in which Nick is the same as other nicks
	// (identity.Key): claims and rate buckets are kept per key.
	NickKey string
	// Held are the Issued stamps of the verified claims on NickKey the
	// client holds.
	Held []int64
	// Addr is the client's address, or the IPv6 prefix it counts as
	// (2001:db8:5::/64): rate buckets are kept per Addr, and an address
	// ban covers it when the banned address or prefix overlaps it.
	Addr string
	// AddrHash is the keyed hash of Addr (identity.Keeper.AddrHash): the
	// message keeps it, and bans by message match it.
	AddrHash string
	Rate     ratelimit.Rate // per address and per nick; zero is off
	NickHold time.Duration  // how long an idle nick stays its owner's

	// Key is the client's Idempotency-Key, already checked; empty when
	// the post has none. A post whose Key the same nick (NickKey) sent
	// within KeyWindow is answered with the message that one stored, and
	// stores nothing; with another room, nick or text it is refused.
	Key       string
	KeyWindow time.Duration
	// NewRooms is how many rooms Addr may start (post the first message
	// of) within NewRoomsPer; 0 is no cap.
	NewRooms    int
	NewRoomsPer time.Duration
}

// PostResult is a stored message and, when the post claimed its nick
// anew, the new claim's Issued stamp (Unix nanoseconds) to hand to the
// client; 0 when the client already held the nick.
type PostResult struct {
	Message  chat.Message
	NewClaim int64
	// Replayed: the post repeated the Idempotency-Key of an earlier one,
	// whose message (and claim, while it is the nick's current one) this
	// is; nothing was stored.
	Replayed bool
}

// Post stores a message after the checks a public chat needs, all in one
// transaction, so a refused post changes nothing: a repeated
// Idempotency-Key first (answered with what it stored), then bans, nick
// ownership, the rate limits of the address and the nick, and the cap on
// new rooms. Writers queue for the transaction, so a post whose key
// another request is storing at the same moment waits for it and is then
// answered as a repeat.
func (s *Store) Post(ctx context.Context, in PostInput) (PostResult, error) {
	var res PostResult
	key := in.NickKey
	err := s.withTx(ctx, lockMessages, func(tx *sqlx.Tx) error {
		// The time is read in the writers' queue, so that it never goes
		// back from one writer to the next: a claim another process used
		// a moment ago was used before now.
		now := s.Now()
		var pk postKey
		if in.Key != "" {
			pk = newPostKey(in)
			done, err := s.repeat(ctx, tx, pk, in, now, &res)
			if done || err != nil {
				return err
			}
		}
		if err := s.checkBans(ctx, tx, in.Addr, key, now); err != nil {
			return err
		}
		if err := s.checkAddressBans(ctx, tx, in.AddrHash, now); err != nil {
			return err
		}
		claim, err := s.claimNick(ctx, tx, in, now)
		if err != nil {
			return err
		}
		if err := s.takeTokens(ctx, tx, in.Rate, now, "addr:"+in.Addr, "nick:"+key); err != nil {
			return err
		}
		if err := s.startRoom(ctx, tx, in, now); err != nil {
			return err
		}
		if res.Message, err = s.insert(ctx, tx, in.Room, in.Nick, in.Text); err != nil {
			return err
		}
		if err := s.keepAddrHash(ctx, tx, res.Message.ID, in.AddrHash); err != nil {
			return err
		}
		res.NewClaim = claim
		if in.Key != "" {
			_, err := tx.ExecContext(ctx, s.dialect(upsertPostKey), pk.hash, pk.fingerprint, res.Message.ID, res.Message.Time, claim, unix(now))
			if err != nil {
				return fmt.Errorf("store the Idempotency-Key: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return PostResult{}, internal(err, "post a message")
	}
	return res, nil
}

// postKey is how a post's Idempotency-Key is kept: hash names the key of
// one nick (two nicks' equal keys are two keys), fingerprint the request
// it came with. Both are SHA-256 in hex, of fields joined by NUL, which
// none of them may hold.
type postKey struct {
	hash, fingerprint string
}

func newPostKey(in PostInput) postKey {
	return postKey{
		hash:        sha256Hex(in.NickKey, in.Key),
		fingerprint: sha256Hex(in.Room, in.Nick, in.Text),
	}
}

func sha256Hex(fields ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(fields, "\x00")))
	return hex.EncodeToString(sum[:])
}

const selectPostKey = `SELECT fingerprint, message_id, created_at, claim FROM post_keys
	WHERE key_hash = ? AND stored_at >= ?`

var upsertPostKey = stmt{
	sqlite: `INSERT INTO post_keys (key_hash, fingerprint, message_id, created_at, claim, stored_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (key_hash) DO UPDATE SET fingerprint = excluded.fingerprint, message_id = excluded.message_id,
		created_at = excluded.created_at, claim = excluded.claim, stored_at = excluded.stored_at`,
	mysql: `INSERT INTO post_keys (key_hash, fingerprint, message_id, created_at, claim, stored_at) VALUES (?, ?, ?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE fingerprint = VALUES(fingerprint), message_id = VALUES(message_id),
		created_at = VALUES(created_at), claim = VALUES(claim), stored_at = VALUES(stored_at)`,
}

// repeat answers a post whose key was stored within in.KeyWindow: with the
// message it stored when the request is the same (done), refused when it
// is not. A key not seen, or seen longer ago, is not done.
func (s *Store) repeat(ctx context.Context, tx *sqlx.Tx, pk postKey, in PostInput, now time.Time, res *PostResult) (done bool, err error) {
	var row struct {
		Fingerprint string `db:"fingerprint"`
		ID          int64  `db:"message_id"`
		Time        string `db:"created_at"`
		Claim       int64  `db:"claim"`
	}
	err = tx.GetContext(ctx, &row, s.sql(selectPostKey), pk.hash, unix(now.Add(-in.KeyWindow)))
	if noRows(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read the Idempotency-Key: %w", err)
	}
	if row.Fingerprint != pk.fingerprint {
		return false, chat.Errorf(chat.EMismatch, "This Idempotency-Key came before with another message. Send each new message with a new key, and a message again with its own.")
	}
	// The fingerprint says room, nick and text are the first post's.
	res.Message = chat.Message{ID: row.ID, Room: in.Room, Nick: in.Nick, Text: in.Text, Time: row.Time, Kind: chat.KindMessage}
	res.Replayed = true
	if row.Claim != 0 {
		// The claim goes to the client again (its first answer may be what
		// was lost) while it is still the nick's.
		var issued int64
		err := tx.GetContext(ctx, &issued, s.sql(selectClaimIssued), in.NickKey)
		if err != nil && !noRows(err) {
			return false, fmt.Errorf("read nick claim: %w", err)
		}
		if issued == row.Claim {
			res.NewClaim = row.Claim
		}
	}
	return true, nil
}

const selectClaimIssued = `SELECT issued FROM nick_claims WHERE nick_key = ?`

const (
	selectRoomUsed = `SELECT EXISTS (SELECT 1 FROM messages WHERE room = ?)`
	countStarts    = `SELECT count(*) AS n, COALESCE(MIN(started_at), 0) AS oldest FROM room_starts
		WHERE addr = ? AND started_at > ?`
)

var upsertStart = stmt{
	sqlite: `INSERT INTO room_starts (room, addr, started_at) VALUES (?, ?, ?)
		ON CONFLICT (room) DO UPDATE SET addr = excluded.addr, started_at = excluded.started_at`,
	mysql: `INSERT INTO room_starts (room, addr, started_at) VALUES (?, ?, ?)
		ON DUPLICATE KEY UPDATE addr = VALUES(addr), started_at = VALUES(started_at)`,
}

// startRoom records that in.Addr starts in.Room when the database holds no
// row of it, or refuses when the address started in.NewRooms rooms within
// in.NewRoomsPer already.
func (s *Store) startRoom(ctx context.Context, tx *sqlx.Tx, in PostInput, now time.Time) error {
	if in.NewRooms <= 0 {
		return nil
	}
	var used bool
	if err := tx.GetContext(ctx, &used, s.sql(selectRoomUsed), in.Room); err != nil {
		return fmt.Errorf("look for the room: %w", err)
	}
	if used {
		return nil
	}
	var starts struct {
		N      int     `db:"n"`
		Oldest float64 `db:"oldest"`
	}
	since := unix(now.Add(-in.NewRoomsPer))
	if err := tx.GetContext(ctx, &starts, s.sql(countStarts), in.Addr, since); err != nil {
		return fmt.Errorf("count new rooms: %w", err)
	}
	if starts.N >= in.NewRooms {
		wait := time.Duration((starts.Oldest - since) * float64(time.Second))
		return &chat.Error{
			Code: chat.ETooMany,
			Message: fmt.Sprintf("Your address has started %d new rooms in the last %s, the most it may. Post in a room that already has messages, or start this one later.",
				starts.N, chat.Duration(in.NewRoomsPer)),
			RetryAfter: max(wait, time.Second),
		}
	}
	if _, err := tx.ExecContext(ctx, s.dialect(upsertStart), in.Room, in.Addr, unix(now)); err != nil {
		return fmt.Errorf("record the new room: %w", err)
	}
	return nil
}

const selectBans = `SELECT COALESCE(nick, '') AS nick, COALESCE(addr, '') AS addr, COALESCE(until, '') AS until
	FROM bans WHERE until IS NULL OR until > ?`

// checkBans refuses a banned address or nick, whose key is key.
func (s *Store) checkBans(ctx context.Context, tx *sqlx.Tx, addr, key string, now time.Time) error {
	var bans []struct{ Nick, Addr, Until string }
	if err := tx.SelectContext(ctx, &bans, s.sql(selectBans), now.UTC().Format(chat.TimeFormat)); err != nil {
		return fmt.Errorf("read bans: %w", err)
	}
	for _, b := range bans {
		if (b.Addr != "" && addrBanned(b.Addr, addr)) || (b.Nick != "" && s.opts.nickKey(b.Nick) == key) {
			until := "."
			if b.Until != "" {
				until = " until " + b.Until + "."
			}
			return chat.Errorf(chat.EForbidden, "You may not post in this chat%s", until)
		}
	}
	return nil
}

// addrBanned reports whether a ban's addr covers the client known as
// client (an address, or the IPv6 prefix it counts as). A ban names an
// address or a prefix (203.0.113.0/24, 2001:db8:5::/48); it covers a
// client whose address or prefix it overlaps, so a ban on one address of
// an IPv6 client's /64 covers the /64, where the client may pick any
// address. What parses as neither is compared as text.
func addrBanned(ban, client string) bool {
	bp, berr := parsePrefix(ban)
	cp, cerr := parsePrefix(client)
	if berr != nil || cerr != nil {
		return strings.TrimSpace(ban) == client
	}
	return bp.Overlaps(cp)
}

// parsePrefix reads an address (as the prefix of it alone) or a prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

const (
	selectClaim = `SELECT issued, last_used FROM nick_claims WHERE nick_key = ?`
	touchClaim  = `UPDATE nick_claims SET last_used = ? WHERE nick_key = ?`
)

var upsertClaim = stmt{
	sqlite: `INSERT INTO nick_claims (nick_key, nick, issued, last_used) VALUES (?, ?, ?, ?)
		ON CONFLICT (nick_key) DO UPDATE SET nick = excluded.nick, issued = excluded.issued, last_used = excluded.last_used`,
	mysql: `INSERT INTO nick_claims (nick_key, nick, issued, last_used) VALUES (?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE nick = VALUES(nick), issued = VALUES(issued), last_used = VALUES(last_used)`,
}

// claimNick checks that the client may post under the nick: nobody claimed
// it, its claim went stale, or the client holds the current claim. It
// returns the new claim's Issued stamp when the client did not hold one,
// else 0.
func (s *Store) claimNick(ctx context.Context, tx *sqlx.Tx, in PostInput, now time.Time) (int64, error) {
	st, err := s.nickState(ctx, tx, in.Held, in.NickKey, now, in.NickHold)
	switch {
	case err != nil:
		return 0, err
	case st == nickHeld:
		_, err := tx.ExecContext(ctx, s.sql(touchClaim), now.UTC().Format(chat.TimeFormat), in.NickKey)
		return 0, err
	case st == nickTaken:
		return 0, chat.Errorf(chat.EConflict, "The nickname %q is in use by someone else. Please choose another one.", in.Nick)
	}
	issued := now.UnixNano()
	if _, err := tx.ExecContext(ctx, s.dialect(upsertClaim), in.NickKey, in.Nick, issued, now.UTC().Format(chat.TimeFormat)); err != nil {
		return 0, fmt.Errorf("store nick claim: %w", err)
	}
	return issued, nil
}

var (
	selectKeyVersion = stmt{
		sqlite: `SELECT value FROM settings WHERE key = 'nick_keys'`,
		mysql:  "SELECT value FROM settings WHERE `key` = 'nick_keys'",
	}
	upsertKeyVersion = stmt{
		sqlite: `INSERT INTO settings (key, value) VALUES ('nick_keys', ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
		mysql: "INSERT INTO settings (`key`, value) VALUES ('nick_keys', ?) ON DUPLICATE KEY UPDATE value = VALUES(value)",
	}
)

const (
	selectAllClaims = `SELECT nick_key, nick, issued, last_used FROM nick_claims`
	deleteAllClaims = `DELETE FROM nick_claims`
	insertClaim     = `INSERT INTO nick_claims (nick_key, nick, issued, last_used) VALUES (?, ?, ?, ?)`
)

// RekeyClaims keys the nick claims the database holds as Options.NickKey
// does, once for each version of that function (the settings row
// nick_keys names the version the claims have): each claim's key is
// computed anew from the nick it was made for. When two claims meet on one
// key — two nicks that now count as one — the one used last keeps it. A
// process calls it after opening the store; when the version is current it
// costs one read.
func (s *Store) RekeyClaims(ctx context.Context, version string) error {
	var have string
	err := s.db.GetContext(ctx, &have, s.dialect(selectKeyVersion))
	if err == nil && have == version {
		return nil
	}
	if err != nil && !noRows(err) {
		return internal(err, "read the version of the nick keys")
	}
	err = s.withTx(ctx, lockMessages, func(tx *sqlx.Tx) error {
		// Another process may have done it since the read above.
		err := tx.GetContext(ctx, &have, s.dialect(selectKeyVersion))
		if err == nil && have == version {
			return nil
		}
		var claims []struct {
			Key      string `db:"nick_key"`
			Nick     string `db:"nick"`
			Issued   int64  `db:"issued"`
			LastUsed string `db:"last_used"`
		}
		if err := tx.SelectContext(ctx, &claims, selectAllClaims); err != nil {
			return fmt.Errorf("read nick claims: %w", err)
		}
		keep := make(map[string]int) // new key → index in claims
		for i, c := range claims {
			k := s.opts.nickKey(c.Nick)
			// Times are ISO-8601 UTC text: they sort as they compare.
			if j, ok := keep[k]; !ok || c.LastUsed > claims[j].LastUsed {
				keep[k] = i
			}
		}
		if _, err := tx.ExecContext(ctx, deleteAllClaims); err != nil {
			return fmt.Errorf("remove nick claims: %w", err)
		}
		for k, i := range keep {
			c := claims[i]
			if _, err := tx.ExecContext(ctx, s.sql(insertClaim), k, c.Nick, c.Issued, c.LastUsed); err != nil {
				return fmt.Errorf("store nick claim: %w", err)
			}
		}
		_, err = tx.ExecContext(ctx, s.dialect(upsertKeyVersion), version)
		return err
	})
	return internal(err, "re-key the nick claims")
}

// ownsNick reports whether a reader may be shown under the nick with key:
// it is free or theirs.
func (s *Store) ownsNick(ctx context.Context, tx *sqlx.Tx, held []int64, key string, now time.Time, hold time.Duration) (bool, error) {
	st, err := s.nickState(ctx, tx, held, key, now, hold)
	return st != nickTaken, err
}

// The states of a nick for one client.
type nickStatus int

const (
	nickFree  nickStatus = iota // never claimed, or its claim went stale
	nickHeld                    // the client holds the current claim
	nickTaken                   // someone else holds a fresh claim
)

// nickState reads the claim on key and judges it against the Issued stamps
// of the client's claims on key and the hold time.
func (s *Store) nickState(ctx context.Context, tx *sqlx.Tx, held []int64, key string, now time.Time, hold time.Duration) (nickStatus, error) {
	var row struct {
		Issued   int64  `db:"issued"`
		LastUsed string `db:"last_used"`
	}
	err := tx.GetContext(ctx, &row, s.sql(selectClaim), key)
	if noRows(err) {
		return nickFree, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read nick claim: %w", err)
	}
	if slices.Contains(held, row.Issued) {
		return nickHeld, nil
	}
	last, err := time.Parse(chat.TimeFormat, row.LastUsed)
	if err != nil || now.Sub(last) < hold {
		return nickTaken, nil
	}
	return nickFree, nil
}

// The rate buckets' column key is a reserved word in MySQL.
var (
	selectBucket = stmt{
		sqlite: `SELECT tokens, updated FROM rate_buckets WHERE key = ?`,
		mysql:  "SELECT tokens, updated FROM rate_buckets WHERE `key` = ?",
	}
	upsertBucket = stmt{
		sqlite: `INSERT INTO rate_buckets (key, tokens, updated) VALUES (?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, updated = excluded.updated`,
		mysql: "INSERT INTO rate_buckets (`key`, tokens, updated) VALUES (?, ?, ?)" + `
		ON DUPLICATE KEY UPDATE tokens = VALUES(tokens), updated = VALUES(updated)`,
	}
)

// takeTokens takes one token from each key's bucket, or none when any is
// empty.
func (s *Store) takeTokens(ctx context.Context, tx *sqlx.Tx, r ratelimit.Rate, now time.Time, keys ...string) error {
	if r.Off() {
		return nil
	}
	t := float64(now.UnixNano()) / 1e9
	next := make([]ratelimit.Bucket, len(keys))
	for i, k := range keys {
		var b ratelimit.Bucket
		err := tx.QueryRowContext(ctx, s.dialect(selectBucket), k).Scan(&b.Tokens, &b.Updated)
		if err != nil && !noRows(err) {
			return fmt.Errorf("read rate bucket: %w", err)
		}
		nb, ok, wait := r.Take(b, err == nil, t)
		if !ok {
			return &chat.Error{
				Code:       chat.ETooMany,
				Message:    fmt.Sprintf("You are sending messages too fast (at most %d in %s). Please wait a moment.", r.N, chat.Duration(r.Per)),
				RetryAfter: wait,
			}
		}
		next[i] = nb
	}
	for i, k := range keys {
		if _, err := tx.ExecContext(ctx, s.dialect(upsertBucket), k, next[i].Tokens, next[i].Updated); err != nil {
			return fmt.Errorf("update rate bucket: %w", err)
		}
	}
	return nil
}

var (
	insertSecret = stmt{
		sqlite: `INSERT INTO settings (key, value) VALUES ('claim_secret', ?) ON CONFLICT DO NOTHING`,
		mysql:  "INSERT IGNORE INTO settings (`key`, value) VALUES ('claim_secret', ?)",
	}
	selectSecret = stmt{
		sqlite: `SELECT value FROM settings WHERE key = 'claim_secret'`,
		mysql:  "SELECT value FROM settings WHERE `key` = 'claim_secret'",
	}
)

// Secret returns the key that signs nick claims, creating it on first use.
// It lives in the database, outside the docroot, shared by every process;
// each Store reads it once.
func (s *Store) Secret(ctx context.Context) ([]byte, error) {
	s.secretMu.Lock()
	defer s.secretMu.Unlock()
	if s.secret != nil {
		return s.secret, nil
	}
	var hexKey string
	err := s.db.GetContext(ctx, &hexKey, s.dialect(selectSecret))
	if noRows(err) {
		var b [32]byte
		rand.Read(b[:])
		err = s.withTx(ctx, lockMessages, func(tx *sqlx.Tx) error {
			if _, err := tx.ExecContext(ctx, s.dialect(insertSecret), hex.EncodeToString(b[:])); err != nil {
				return err
			}
			return tx.GetContext(ctx, &hexKey, s.dialect(selectSecret))
		})
	}
	if err != nil {
		return nil, internal(err, "read the claim secret")
	}
	key, err := hex.DecodeString(hexKey)
	if err != nil || len(key) < 16 {
		return nil, internal(errors.New("settings.claim_secret is not a hex key of 16 bytes or more"), "read the claim secret")
	}
	s.secret = key
	return key, nil
}
