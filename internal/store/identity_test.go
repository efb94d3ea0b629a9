package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"cgichat/internal/chat"
	"cgichat/internal/identity"
	"cgichat/test/dbtest"
)

// schemaOf returns where backend b's schema text lives.
func schemaOf(b dbtest.Backend) *func() string {
	switch b {
	case dbtest.MySQL:
		return &mysqlDB.schemaText
	case dbtest.Postgres:
		return &postgresDB.schemaText
	}
	return &sqliteDB.schemaText
}

// TestRoomsFoldedOnUpgrade writes rooms in two cases under the schema
// before room names were folded, then opens the database with the schema
// as it is: every message is in the folded room, and the trimmed mark of
// each folded room is the highest of its spellings.
func TestRoomsFoldedOnUpgrade(t *testing.T) {
	for _, b := range dbtest.Backends {
		t.Run(string(b), func(t *testing.T) {
			text := schemaOf(b)
			full := *text
			defer func() { *text = full }()
			// The schema up to the step that folds rooms.
			*text = func() string {
				s := full()
				fold := strings.Index(strings.ToLower(s), "set room = lower(room)")
				return s[:strings.LastIndex(s[:fold], "-- step:")]
			}
			db := dbtest.New(t, b)
			old := mustOpenDB(t, db, false)
			ctx := context.Background()
			for _, room := range []string{"Dev", "dev", "DEV", "lobby", "Ops"} {
				mustInsert(t, old, room, "in "+room)
			}
			old.db.MustExec(old.sql(`INSERT INTO trimmed (room, through) VALUES ('Dev', 2), ('dev', 1), ('OPS', 4)`))
			old.db.MustExec(old.sql(`INSERT INTO streams (owner, room, addr, seen_at) VALUES ('x', 'Dev', '10.0.0.1', 1)`))
			old.Close()

			*text = full
			s := mustOpenDB(t, db, false)
			ms, err := s.Latest(ctx, "dev", 10)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := texts(ms), "in Dev,in dev,in DEV"; got != want {
				t.Errorf("room dev holds %q, want %q", got, want)
			}
			if ms, _ := s.Latest(ctx, "ops", 10); texts(ms) != "in Ops" {
				t.Errorf("room ops holds %q, want %q", texts(ms), "in Ops")
			}
			var trimmed []struct {
				Room    string `db:"room"`
				Through int64  `db:"through"`
			}
			if err := s.db.Select(&trimmed, "SELECT room, through FROM trimmed ORDER BY room"); err != nil {
				t.Fatal(err)
			}
			if got, want := fmt.Sprint(trimmed), "[{dev 2} {ops 4}]"; got != want {
				t.Errorf("trimmed = %s, want %s", got, want)
			}
			var rooms []string
			s.db.Select(&rooms, "SELECT room FROM streams")
			if fmt.Sprint(rooms) != "[dev]" {
				t.Errorf("stream rooms = %v, want [dev]", rooms)
			}
		})
	}
}

func texts(ms []chat.Message) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Text)
	}
	return strings.Join(out, ",")
}

// TestAddressBansCoverPrefixes bans addresses and prefixes and posts from
// clients known by an IPv4 address or by the IPv6 prefix they count as.
func TestAddressBansCoverPrefixes(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		withClock(s)
		ctx := context.Background()
		for _, ban := range []string{"2001:db8:5::1", "2001:db8:6::/48", "203.0.113.0/24", "198.51.100.7", " 192.0.2.9 ", "::ffff:192.0.2.33"} {
			s.db.MustExec(s.sql(`INSERT INTO bans (addr) VALUES (?)`), ban)
		}
		tests := []struct {
			name, addr string
			want       chat.Code
		}{
			{"Another address of a banned address's /64", "2001:db8:5::/64", chat.EForbidden},
			{"The banned address itself, with prefix 128", "2001:db8:5::1", chat.EForbidden},
			{"Its neighbour, with prefix 128", "2001:db8:5::2", ""},
			{"The next /64", "2001:db8:5:1::/64", ""},
			{"A /64 inside a banned /48", "2001:db8:6:ab::/64", chat.EForbidden},
			{"A /64 outside it", "2001:db8:7::/64", ""},
			{"IPv4 in a banned /24", "203.0.113.99", chat.EForbidden},
			{"IPv4 next to it", "203.0.114.1", ""},
			{"Banned IPv4 address", "198.51.100.7", chat.EForbidden},
			{"Its neighbour", "198.51.100.8", ""},
			{"A ban written with spaces", "192.0.2.9", chat.EForbidden},
			{"A ban written as IPv4 in IPv6", "192.0.2.33", chat.EForbidden},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := s.Post(ctx, input(fmt.Sprint("n", i), tt.addr))
				if got := codeOf(err); got != tt.want {
					t.Errorf("code %q (%v), want %q", got, err, tt.want)
				}
			})
		}
	})
}

func TestAddrBanned(t *testing.T) {
	tests := []struct {
		ban, client string
		want        bool
	}{
		{"2001:db8:5::1", "2001:db8:5::/64", true},
		{"2001:db8:5::/64", "2001:db8:5::2", true},
		{"2001:db8:5::/64", "2001:db8:5:1::/64", false},
		{"2001:db8::/32", "2001:db8:ffff:1::/64", true},
		{"10.0.0.1", "10.0.0.1", true},
		{"10.0.0.0/8", "10.200.0.1", true},
		{"10.0.0.1", "::ffff:10.0.0.1", true},
		{"10.0.0.1", "10.0.0.2", false},
		{"10.0.0.1", "2001:db8::/64", false},
		{"unix-peer", "unix-peer", true},
		{"unix-peer", "10.0.0.1", false},
	}
	for _, tt := range tests {
		if got := addrBanned(tt.ban, tt.client); got != tt.want {
			t.Errorf("addrBanned(%q, %q) = %v, want %v", tt.ban, tt.client, got, tt.want)
		}
	}
}

// TestNickBansAndClaimsByStandards bans a nick and claims another, then
// posts under nicks a reader takes for them.
func TestNickBansAndClaimsByStandards(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		withClock(s)
		ctx := context.Background()
		s.db.MustExec(`INSERT INTO bans (nick) VALUES ('troll')`)
		own, err := s.Post(ctx, input("ada", "10.0.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name, nick string
			held       int64
			want       chat.Code
		}{
			{"Banned nick with a Cyrillic о", "tr\u043ell", 0, chat.EForbidden},
			{"Banned nick in capitals with a zero", "TR0LL", 0, ""},
			{"Banned nick in mathematical letters", "𝐭𝐫𝐨𝐥𝐥", 0, chat.EForbidden},
			{"Claimed nick with a Cyrillic а", "\u0430da", 0, chat.EConflict},
			{"Claimed nick in Greek and Cyrillic", "\u0430d\u03b1", 0, chat.EConflict},
			{"Claimed nick, its owner in Cyrillic", "\u0430da", own.NewClaim, ""},
			{"Another nick", "bob", 0, ""},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				in := input(tt.nick, fmt.Sprint("10.0.1.", i))
				if tt.held != 0 {
					in.Held = []int64{tt.held}
				}
				_, err := s.Post(ctx, in)
				if got := codeOf(err); got != tt.want {
					t.Errorf("code %q (%v), want %q", got, err, tt.want)
				}
			})
		}
	})
}

// TestRekeyClaims stores claims keyed the way keys were made before PRECIS
// and skeletons, then re-keys them: each claim is found under its nick's
// key now, their owners keep them, and of two claims that now meet the one
// used last wins.
func TestRekeyClaims(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		s := MustOpen(t, b)
		withClock(s)
		ctx := context.Background()
		// Keys as the old rules made them: NFKC and case folded.
		for _, c := range []struct {
			key, nick string
			issued    int64
			lastUsed  string
		}{
			{"ada", "Ada", 11, "2026-11-25T11:00:00.000Z"},
			{"\u0430da", "\u0430da", 12, "2026-11-25T11:30:00.000Z"}, // Cyrillic а: another nick then
			{"bob", "BOB", 13, "2026-11-25T11:45:00.000Z"},
			{"strasse", "Straße", 14, "2026-11-25T11:50:00.000Z"},
		} {
			s.db.MustExec(s.sql(insertClaim), c.key, c.nick, c.issued, c.lastUsed)
		}
		s.db.MustExec(s.sql(`DELETE FROM settings WHERE ` + keyColumn(b) + ` = 'nick_keys'`))
		if err := s.RekeyClaims(ctx, identity.KeyVersion); err != nil {
			t.Fatal(err)
		}
		var rows []struct {
			Key    string `db:"nick_key"`
			Nick   string `db:"nick"`
			Issued int64  `db:"issued"`
		}
		if err := s.db.Select(&rows, "SELECT nick_key, nick, issued FROM nick_claims"); err != nil {
			t.Fatal(err)
		}
		got := make([]string, 0, len(rows))
		for _, r := range rows {
			got = append(got, fmt.Sprintf("%s=%d", r.Nick, r.Issued))
			if r.Key != identity.Key(r.Nick) {
				t.Errorf("claim on %q has key %q, want %q", r.Nick, r.Key, identity.Key(r.Nick))
			}
		}
		sort.Strings(got)
		if want := "[BOB=13 Straße=14 аda=12]"; fmt.Sprint(got) != want {
			t.Errorf("claims = %v, want %s (ada and аda meet; аda was used last)", got, want)
		}
		// Owners post as before, with the Issued stamps they hold.
		for _, tt := range []struct {
			nick string
			held int64
		}{{"bob", 13}, {"STRASSE", 14}, {"ada", 12}} {
			if _, err := s.Post(ctx, input(tt.nick, "10.0.0.1", tt.held)); err != nil {
				t.Errorf("owner of %q: %v, want the post stored", tt.nick, err)
			}
		}
		// Once done, it does nothing more: a claim written now stays.
		s.db.MustExec(s.sql(insertClaim), "stale-key", "zed", 15, "2026-11-25T11:55:00.000Z")
		if err := s.RekeyClaims(ctx, identity.KeyVersion); err != nil {
			t.Fatal(err)
		}
		var n int
		s.db.Get(&n, s.sql(`SELECT count(*) FROM nick_claims WHERE nick_key = 'stale-key'`))
		if n != 1 {
			t.Errorf("a second re-key with the same version changed the claims")
		}
	})
}

// keyColumn is the settings table's key column as b writes it.
func keyColumn(b dbtest.Backend) string {
	if b == dbtest.MySQL {
		return "`key`"
	}
	return "key"
}
