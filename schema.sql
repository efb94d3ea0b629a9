-- cgichat schema: the one source of truth, embedded into both programs.
--
-- The file is a list of numbered steps. A step is applied once, in its own
-- transaction, when `PRAGMA user_version` is below its number; the version is
-- then raised to it. Add new steps at the end; never edit an applied step.
-- Inspect with: sqlite3 chat.db '.schema'

-- step: 1
CREATE TABLE IF NOT EXISTS messages (
    -- AUTOINCREMENT: ids are never reused, even after deletes; resuming a
    -- stream from Last-Event-ID depends on it.
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    room       TEXT    NOT NULL,
    nick       TEXT    NOT NULL,
    text       TEXT    NOT NULL,
    -- ISO-8601 UTC with milliseconds, e.g. 2026-11-25T15:18:47.123Z.
    created_at TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_room_id ON messages (room, id);

-- step: 2
-- Moderation, abuse resistance, presence and retention.

-- Deleting a message (DELETE FROM messages WHERE id = 42) leaves a
-- tombstone: a row of kind 'delete' whose target is the deleted id. It gets
-- a new id, so open pages learn of the deletion through their stream and a
-- resuming stream does too. Retention marks rows 'pruned' before deleting
-- them, which leaves no tombstone.
ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'message';
ALTER TABLE messages ADD COLUMN target INTEGER;
CREATE TRIGGER messages_tombstone AFTER DELETE ON messages WHEN old.kind = 'message'
BEGIN
    INSERT INTO messages (room, nick, text, created_at, kind, target)
    VALUES (old.room, old.nick, '', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'delete', old.id);
END;

-- Bans: INSERT INTO bans (nick) VALUES ('troll');
--       INSERT INTO bans (addr, until) VALUES ('203.0.113.7', '2026-12-01T00:00:00Z');
-- nick matches case-insensitively and after Unicode NFKC; addr is the client
-- address as the programs see it; until is ISO-8601 UTC, NULL for ever.
CREATE TABLE bans (
    nick       TEXT,
    addr       TEXT,
    until      TEXT,
    reason     TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK (nick IS NOT NULL OR addr IS NOT NULL)
);

-- Rate limits: a token bucket per key ('addr:…' or 'nick:…'), shared by
-- every process. updated is Unix time in seconds.
CREATE TABLE rate_buckets (
    key     TEXT PRIMARY KEY,
    tokens  REAL NOT NULL,
    updated REAL NOT NULL
) WITHOUT ROWID;

-- Nick ownership: the claim last issued for a normalised nick, and when its
-- owner last posted.
CREATE TABLE nick_claims (
    nick_key  TEXT PRIMARY KEY,
    nick      TEXT NOT NULL,
    issued    INTEGER NOT NULL,
    last_used TEXT NOT NULL
) WITHOUT ROWID;

-- Settings the programs keep for themselves, such as the secret that signs
-- nick claims. Deleting claim_secret invalidates every claim.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Streams: who is in which room (presence) and how many streams each client
-- address holds open. seen_at (Unix seconds) is renewed every heartbeat
-- while open, and set when the stream ends; rows not renewed for a while
-- are gone (a process killed outright cannot say so) and get removed.
CREATE TABLE streams (
    id      INTEGER PRIMARY KEY,
    owner   TEXT NOT NULL,
    room    TEXT NOT NULL,
    nick    TEXT,
    addr    TEXT NOT NULL,
    open    INTEGER NOT NULL DEFAULT 1,
    seen_at REAL NOT NULL
);
CREATE INDEX streams_addr ON streams (addr);
CREATE INDEX streams_room ON streams (room);
CREATE INDEX streams_owner ON streams (owner);

-- Retention: per room, the highest id removed by pruning, so a stream
-- resuming from before it can say that history was trimmed.
CREATE TABLE trimmed (
    room    TEXT PRIMARY KEY,
    through INTEGER NOT NULL
) WITHOUT ROWID;

-- step: 3
-- Rooms are one case, as IRC channels are: #Dev and #dev are one room. The
-- programs fold room names to lower case; this folds the rows written
-- before, so their messages stay reachable, and keeps per folded room the
-- highest id pruned.
-- Bans from here on: a nick matches any nick a reader would take for it
-- (PRECIS Nickname, case folded, Unicode confusable skeleton); addr is an
-- address or a prefix ('2001:db8:5::/48'), and covers an IPv6 client's
-- whole /64 (CHAT_IPV6_PREFIX) when it names one address of it.
UPDATE messages SET room = lower(room) WHERE room <> lower(room);
UPDATE streams SET room = lower(room) WHERE room <> lower(room);
INSERT INTO trimmed (room, through)
    SELECT lower(room), max(through) FROM trimmed WHERE room <> lower(room) GROUP BY lower(room)
    ON CONFLICT (room) DO UPDATE SET through = max(through, excluded.through);
DELETE FROM trimmed WHERE room <> lower(room);

-- step: 4
-- A budget of live streams per web host, and one stream per reader.
--
-- reader is the id a page sends (random, one per tab group, kept across its
-- reconnects): a new stream of a reader asks its older ones to end, by
-- setting open = 2 (superseded) until their process ends them (open = 0).
-- host is the web host that serves the stream: the budget counts per host.
-- kind is 'live' for a stream that holds its process, 'poll' for a request
-- answered at once because the host's budget was full; a reader's poll row
-- is renewed by each of its polls, is open while one runs, counts it
-- present, and keeps in cost how many seconds its last poll took, from
-- which the pollers' retry: is worked out.
ALTER TABLE streams ADD COLUMN reader TEXT;
ALTER TABLE streams ADD COLUMN host TEXT NOT NULL DEFAULT '';
ALTER TABLE streams ADD COLUMN kind TEXT NOT NULL DEFAULT 'live';
ALTER TABLE streams ADD COLUMN cost REAL;
CREATE INDEX streams_reader ON streams (reader);
CREATE INDEX streams_kind_seen ON streams (kind, seen_at);

-- step: 5
-- Moderation from the page (docs/security.md): moderator keys, address bans
-- by message, the moderation log, nick transfers between devices.
--
-- Each message keeps addr_hash, a keyed hash (HMAC-SHA256 under a key derived
-- from settings.claim_secret, 128 bits in hex) of what the programs know its
-- poster as: an IPv4 address or an IPv6 /64. It is what a ban by message
-- needs and no more: the address itself is never stored. Messages from before
-- this step have none, and their posters cannot be banned by message. A
-- deletion's tombstone keeps it, so a deleted message's poster can be banned
-- too.
ALTER TABLE messages ADD COLUMN addr_hash TEXT;
DROP TRIGGER messages_tombstone;
CREATE TRIGGER messages_tombstone AFTER DELETE ON messages WHEN old.kind = 'message'
BEGIN
    INSERT INTO messages (room, nick, text, created_at, kind, target, addr_hash)
    VALUES (old.room, old.nick, '', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'delete', old.id, old.addr_hash);
END;

-- Moderator keys: only the SHA-256 of each key (hex) is stored. One key per
-- label. Revoke one: DELETE FROM moderator_keys WHERE label = 'alice';
-- (its holder's page loses its moderator rights at its next action).
CREATE TABLE moderator_keys (
    label      TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;

-- Address bans made by message: the addr_hash of the banned message's
-- poster, never an address. until is ISO-8601 UTC, NULL for ever.
-- Lift one: DELETE FROM address_bans WHERE message = 42;
CREATE TABLE address_bans (
    addr_hash  TEXT    NOT NULL,
    message    INTEGER,
    nick       TEXT,
    until      TEXT,
    reason     TEXT,
    moderator  TEXT,
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX address_bans_hash ON address_bans (addr_hash);

-- The moderation log: who (a key's label; NULL when a poster deleted their
-- own message) did what (delete, ban-nick, ban-address, release-nick,
-- unban-nick, unban-address, key-created), to which message or nick, when.
--   sqlite3 chat.db 'SELECT * FROM moderation_log ORDER BY id DESC LIMIT 20'
CREATE TABLE moderation_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT    NOT NULL,
    moderator  TEXT,
    action     TEXT    NOT NULL,
    message    INTEGER,
    nick       TEXT,
    detail     TEXT
);

-- Nick transfers: a single-use code, valid for minutes, that installs the
-- claim of its nick on another device. Only the code's SHA-256 is stored.
CREATE TABLE nick_transfers (
    code_hash TEXT    PRIMARY KEY,
    nick_key  TEXT    NOT NULL,
    issued    INTEGER NOT NULL,
    expires   TEXT    NOT NULL
) WITHOUT ROWID;

-- step: 6
-- Bounds on what the database keeps (docs/databases.md, "What the database
-- keeps").
--
-- Posts are exactly-once: a post that carries an Idempotency-Key leaves a
-- row here for 24 hours. key_hash is the SHA-256 (hex) of the nick's key and
-- the client's key, fingerprint that of the room, nick and text; a post with
-- the same key_hash is answered with message_id and created_at when its
-- fingerprint is the same (and refused when not), and stores nothing. claim
-- is the Issued stamp of the nick claim the first post made (0 for none),
-- handed to the client again.
CREATE TABLE post_keys (
    key_hash    TEXT    PRIMARY KEY,
    fingerprint TEXT    NOT NULL,
    message_id  INTEGER NOT NULL,
    created_at  TEXT    NOT NULL,
    claim       INTEGER NOT NULL,
    stored_at   REAL    NOT NULL
) WITHOUT ROWID;
CREATE INDEX post_keys_stored ON post_keys (stored_at);

-- Who started each room (posted its first message) in the last 24 hours,
-- for the cap on new rooms per address (CHAT_ROOMS_PER_DAY); started_at is
-- Unix seconds.
CREATE TABLE room_starts (
    room       TEXT PRIMARY KEY,
    addr       TEXT NOT NULL,
    started_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX room_starts_addr ON room_starts (addr, started_at);

-- The size of all messages together, which CHAT_KEEP_TOTAL_MB bounds: per
-- row the bytes of room, nick, text and addr_hash, and 64 for the rest of
-- the row and its index entry. bytes counts the rows up to the id through; retention
-- adds the newer ones (a post costs nothing here), and a trigger takes off
-- every counted row deleted, so a moderator's DELETE counts too.
CREATE TABLE sizes (
    name    TEXT    PRIMARY KEY,
    bytes   INTEGER NOT NULL,
    through INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO sizes (name, bytes, through)
    SELECT 'messages', COALESCE(sum(length(CAST(room AS BLOB)) + length(CAST(nick AS BLOB)) + length(CAST(text AS BLOB))
        + COALESCE(length(addr_hash), 0) + 64), 0),
        COALESCE(max(id), 0)
    FROM messages;
CREATE TRIGGER messages_bytes_removed AFTER DELETE ON messages
BEGIN
    UPDATE sizes SET bytes = bytes - (length(CAST(old.room AS BLOB)) + length(CAST(old.nick AS BLOB)) + length(CAST(old.text AS BLOB))
        + COALESCE(length(old.addr_hash), 0) + 64)
    WHERE name = 'messages' AND through >= old.id;
END;

-- When a room was last trimmed (Unix seconds): the mark of a room that
-- holds no rows any more is forgotten a week later.
ALTER TABLE trimmed ADD COLUMN trimmed_at REAL NOT NULL DEFAULT 0;

-- Nick claims unused for CHAT_NICK_HOURS are removed: found by last use.
CREATE INDEX nick_claims_last_used ON nick_claims (last_used);

-- step: 7
-- Streams' rows are found without reading a room's or a process's others:
-- a stream process its own by owner and state (its renewal the open ones,
-- open = 1; every change it sees the superseded ones, open = 2), and
-- presence, read as each stream opens, a room's readers with a nick; and
-- the poll row of a client that sends no reader id, its address's polls.
-- An index dropped, or one made by hand, stops no upgrade.
CREATE INDEX IF NOT EXISTS streams_owner_open ON streams (owner, open);
DROP INDEX IF EXISTS streams_owner;
CREATE INDEX IF NOT EXISTS streams_room_nick ON streams (room, nick);
DROP INDEX IF EXISTS streams_room;
CREATE INDEX IF NOT EXISTS streams_addr_kind ON streams (addr, kind);
DROP INDEX IF EXISTS streams_addr;
