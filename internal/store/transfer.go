package store

import (
	"context"
	"fmt"
	"time"

	"cgichat/internal/chat"

	"github.com/jmoiron/sqlx"
)

// One nick on several devices: the holder of a nick's claim makes a
// single-use transfer code, and the device that redeems it gets the same
// claim; and a page asks how a nick stands for it before the first post.

// The states of a nick for a client, as NickStatus names them.
const (
	NickFree   = "free"   // nobody holds it (or the claim went stale): the next post claims it
	NickYours  = "yours"  // the client holds its current claim
	NickTaken  = "taken"  // someone else holds it
	NickBanned = "banned" // a ban on it (or a nick a reader would take for it) is in force
)

// NickStatus returns how nick, whose key is key, stands for a client that
// holds claims Issued at held, with claims lasting hold after their last
// use: NickFree, NickYours, NickTaken or NickBanned.
func (s *Store) NickStatus(ctx context.Context, nick, key string, held []int64, hold time.Duration) (string, error) {
	status := NickFree
	err := s.withTx(ctx, lockMessages, func(tx *sqlx.Tx) error {
		now := s.Now()
		banned, err := s.nickBanned(ctx, tx, key, now)
		if err != nil || banned {
			status = NickBanned
			return err
		}
		st, err := s.nickState(ctx, tx, held, key, now, hold)
		switch st {
		case nickHeld:
			status = NickYours
		case nickTaken:
			status = NickTaken
		}
		return err
	})
	return status, internal(err, "check the nick %s", nick)
}

const selectNickBansInForce = `SELECT nick FROM bans WHERE nick IS NOT NULL AND (until IS NULL OR until > ?)`

// nickBanned reports whether a ban in force names a nick whose key is key.
func (s *Store) nickBanned(ctx context.Context, tx *sqlx.Tx, key string, now time.Time) (bool, error) {
	var nicks []string
	if err := tx.SelectContext(ctx, &nicks, s.sql(selectNickBansInForce), now.UTC().Format(chat.TimeFormat)); err != nil {
		return false, fmt.Errorf("read bans: %w", err)
	}
	for _, n := range nicks {
		if s.opts.nickKey(n) == key {
			return true, nil
		}
	}
	return false, nil
}

// TransferInput is a request for a transfer code: the nick's key, the
// Issued stamps of the client's claims on it and how long claims last,
// the new code's hash and when it expires.
type TransferInput struct {
	NickKey  string
	Held     []int64
	NickHold time.Duration
	CodeHash string
	Expires  time.Time
}

const (
	selectClaimNick        = `SELECT nick, issued FROM nick_claims WHERE nick_key = ?`
	deleteExpiredTransfers = `DELETE FROM nick_transfers WHERE expires < ?`
	deleteNickTransfers    = `DELETE FROM nick_transfers WHERE nick_key = ?`
	insertTransfer         = `INSERT INTO nick_transfers (code_hash, nick_key, issued, expires) VALUES (?, ?, ?, ?)`
	selectTransfer         = `SELECT nick_key, issued, expires FROM nick_transfers WHERE code_hash = ?`
	deleteTransfer         = `DELETE FROM nick_transfers WHERE code_hash = ?`
)

// claimRow is a nick's current claim.
type claimRow struct {
	Nick   string `db:"nick"`
	Issued int64  `db:"issued"`
}

// CreateTransfer stores a transfer code for the nick whose current claim
// the client holds, replacing any earlier code for it, and returns the
// nick as claimed. A client that does not hold the claim is refused.
func (s *Store) CreateTransfer(ctx context.Context, in TransferInput) (string, error) {
	var nick string
	err := s.withTx(ctx, lockMessages, func(tx *sqlx.Tx) error {
		now := s.Now()
		st, err := s.nickState(ctx, tx, in.Held, in.NickKey, now, in.NickHold)
		if err != nil {
			return err
		}
		if st != nickHeld {
			return chat.Errorf(chat.EForbidden, "Only the browser that holds a nick can pass it on: post under it here first.")
		}
		var c claimRow
		if err := tx.GetContext(ctx, &c, s.sql(selectClaimNick), in.NickKey); err != nil {
			return fmt.Errorf("read the claim: %w", err)
		}
		for _, q := range []struct {
			sql string
			arg any
		}{{deleteExpiredTransfers, now.UTC().Format(chat.TimeFormat)}, {deleteNickTransfers, in.NickKey}} {
			if _, err := tx.ExecContext(ctx, s.sql(q.sql), q.arg); err != nil {
				return fmt.Errorf("forget old transfer codes: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.sql(insertTransfer), in.CodeHash, in.NickKey, c.Issued, in.Expires.UTC().Format(chat.TimeFormat)); err != nil {
			return fmt.Errorf("store the transfer code: %w", err)
		}
		nick = c.Nick
		return nil
	})
	return nick, internal(err, "make a transfer code")
}

// Transferred is what redeeming a transfer code gives: the nick's claim.
type Transferred struct {
	Nick    string
	NickKey string
	Issued  int64
}

// RedeemTransfer uses up the transfer code whose hash is hash and returns
// the claim it carries, if the code is known, unexpired, and its nick's
// claim is still the one it was made for.
func (s *Store) RedeemTransfer(ctx context.Context, hash string) (Transferred, error) {
	var out Transferred
	refused := chat.Errorf(chat.EForbidden, "This transfer code is wrong, used already or expired. Make a new one on the device that holds the nick.")
	err := s.withTx(ctx, lockMessages, func(tx *sqlx.Tx) error {
		var row struct {
			Key     string `db:"nick_key"`
			Issued  int64  `db:"issued"`
			Expires string `db:"expires"`
		}
		err := tx.GetContext(ctx, &row, s.sql(selectTransfer), hash)
		if noRows(err) {
			return refused
		}
		if err != nil {
			return fmt.Errorf("read the transfer code: %w", err)
		}
		// Used once, whatever follows.
		if _, err := tx.ExecContext(ctx, s.sql(deleteTransfer), hash); err != nil {
			return fmt.Errorf("use up the transfer code: %w", err)
		}
		if row.Expires <= s.stamp() {
			return nil
		}
		var c claimRow
		err = tx.GetContext(ctx, &c, s.sql(selectClaimNick), row.Key)
		if err != nil && !noRows(err) {
			return fmt.Errorf("read the claim: %w", err)
		}
		if err == nil && c.Issued == row.Issued {
			out = Transferred{Nick: c.Nick, NickKey: row.Key, Issued: c.Issued}
		}
		return nil
	})
	if err != nil {
		return Transferred{}, internal(err, "redeem a transfer code")
	}
	if out.NickKey == "" {
		return Transferred{}, refused
	}
	return out, nil
}
