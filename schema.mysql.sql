-- cgichat schema for MySQL and MariaDB: the same tables, columns and
-- meaning as schema.sql (SQLite), in MySQL's dialect. Embedded into both
-- programs and applied in numbered steps like schema.sql; the applied
-- steps are listed in the table schema_migrations, which the programs keep.
-- Add new steps at the end; never edit an applied step. Every table uses
-- utf8mb4 with binary collation, so keys compare as exactly as in SQLite.
-- Inspect with: mysql chat -e 'SHOW CREATE TABLE messages'

-- step: 1
-- One row per lock: 'messages' numbers messages and is taken by every
-- writer of messages, nick claims, rate buckets, settings and retention
-- before anything else, so they commit one at a time as in SQLite, and a
-- message id becomes visible only after every smaller one. 'streams' is
-- taken by a stream opening, so the cap per address holds across processes.
CREATE TABLE counters (
    name  VARCHAR(32) NOT NULL PRIMARY KEY,
    value BIGINT      NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
INSERT INTO counters (name, value) VALUES ('messages', 0), ('streams', 0);

-- Messages. id comes from counters.messages (trigger messages_id), never
-- from the statement: increasing in commit order, never reused.
CREATE TABLE messages (
    id         BIGINT       NOT NULL DEFAULT 0 PRIMARY KEY,
    room       VARCHAR(32)  NOT NULL,
    nick       VARCHAR(255) NOT NULL,
    text       TEXT         NOT NULL,
    -- ISO-8601 UTC with milliseconds, e.g. 2026-11-25T15:18:47.123Z.
    created_at VARCHAR(32)  NOT NULL,
    kind       VARCHAR(16)  NOT NULL DEFAULT 'message',
    target     BIGINT,
    INDEX messages_room_id (room, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TRIGGER messages_id BEFORE INSERT ON messages FOR EACH ROW
BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'messages';
    SET NEW.id = (SELECT value FROM counters WHERE name = 'messages');
END;

-- A MySQL trigger may not insert into the table it fires on, so the
-- tombstone of a deletion is written by a procedure, one statement for a
-- moderator: CALL delete_message(42). A plain DELETE of a message would
-- leave open pages showing it, so it is refused; retention marks rows
-- 'pruned' before deleting them, which leaves no tombstone.
CREATE TRIGGER messages_delete_guard BEFORE DELETE ON messages FOR EACH ROW
BEGIN
    IF OLD.kind = 'message' THEN
        SIGNAL SQLSTATE '45000'
            SET MESSAGE_TEXT = 'cgichat: delete a message with CALL delete_message(id), which tells open pages';
    END IF;
END;

CREATE PROCEDURE delete_message(IN message_id BIGINT)
BEGIN
    DECLARE locked BIGINT;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        ROLLBACK;
        RESIGNAL;
    END;
    START TRANSACTION;
    SELECT value INTO locked FROM counters WHERE name = 'messages' FOR UPDATE;
    UPDATE messages SET kind = 'deleting' WHERE id = message_id AND kind = 'message';
    IF ROW_COUNT() > 0 THEN
        INSERT INTO messages (room, nick, text, created_at, kind, target)
            SELECT room, nick, '', CONCAT(LEFT(DATE_FORMAT(UTC_TIMESTAMP(3), '%Y-%m-%dT%H:%i:%s.%f'), 23), 'Z'), 'delete', id
            FROM messages WHERE id = message_id;
        DELETE FROM messages WHERE id = message_id;
    END IF;
    COMMIT;
END;

-- Bans: INSERT INTO bans (nick) VALUES ('troll');
--       INSERT INTO bans (addr, until) VALUES ('203.0.113.7', '2026-12-01T00:00:00Z');
CREATE TABLE bans (
    nick       VARCHAR(255),
    addr       VARCHAR(255),
    until      VARCHAR(32),
    reason     TEXT,
    created_at VARCHAR(32) NOT NULL DEFAULT (CONCAT(LEFT(DATE_FORMAT(UTC_TIMESTAMP(3), '%Y-%m-%dT%H:%i:%s.%f'), 23), 'Z')),
    CHECK (nick IS NOT NULL OR addr IS NOT NULL)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Rate limits: a token bucket per key ('addr:…' or 'nick:…'); updated is
-- Unix time in seconds. Keys are at most 768 characters (3072 bytes, the
-- longest InnoDB key): a 32-character nick after NFKC stays well below.
CREATE TABLE rate_buckets (
    `key`   VARCHAR(768) NOT NULL PRIMARY KEY,
    tokens  DOUBLE       NOT NULL,
    updated DOUBLE       NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Nick ownership: the claim last issued for a normalised nick, and when its
-- owner last posted.
CREATE TABLE nick_claims (
    nick_key  VARCHAR(768) NOT NULL PRIMARY KEY,
    nick      VARCHAR(255) NOT NULL,
    issued    BIGINT       NOT NULL,
    last_used VARCHAR(32)  NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Settings the programs keep for themselves, such as the secret that signs
-- nick claims. Deleting claim_secret invalidates every claim.
CREATE TABLE settings (
    `key` VARCHAR(64) NOT NULL PRIMARY KEY,
    value TEXT        NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Streams: presence and the cap per address (see schema.sql).
CREATE TABLE streams (
    id      BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    owner   VARCHAR(64)  NOT NULL,
    room    VARCHAR(32)  NOT NULL,
    nick    VARCHAR(255),
    addr    VARCHAR(255) NOT NULL,
    open    INT          NOT NULL DEFAULT 1,
    seen_at DOUBLE       NOT NULL,
    INDEX streams_addr (addr),
    INDEX streams_room (room),
    INDEX streams_owner (owner),
    -- The change check reads MAX(seen_at) several times a second.
    INDEX streams_seen (seen_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Retention: per room, the highest id removed by pruning.
CREATE TABLE trimmed (
    room    VARCHAR(32) NOT NULL PRIMARY KEY,
    through BIGINT      NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- step: 2
-- Rooms are one case (see schema.sql, step 3): fold the rows written before.
UPDATE messages SET room = LOWER(room) WHERE room <> LOWER(room);
UPDATE streams SET room = LOWER(room) WHERE room <> LOWER(room);
INSERT INTO trimmed (room, through)
    SELECT folded.room, folded.through FROM (
        SELECT LOWER(room) AS room, MAX(through) AS through FROM trimmed
        WHERE room <> LOWER(room) GROUP BY LOWER(room)
    ) AS folded
    ON DUPLICATE KEY UPDATE through = GREATEST(trimmed.through, folded.through);
DELETE FROM trimmed WHERE room <> LOWER(room);

-- step: 3
-- A budget of live streams per web host, and one stream per reader (see
-- schema.sql, step 4).
ALTER TABLE streams
    ADD COLUMN reader VARCHAR(64),
    ADD COLUMN host   VARCHAR(255) NOT NULL DEFAULT '',
    ADD COLUMN kind   VARCHAR(8)   NOT NULL DEFAULT 'live',
    ADD COLUMN cost   DOUBLE,
    ADD INDEX streams_reader (reader),
    ADD INDEX streams_kind_seen (kind, seen_at);

-- step: 4
-- Moderation from the page (see schema.sql, step 5): each message's keyed
-- address hash, kept by its tombstone; moderator keys (SHA-256 only);
-- address bans by message; the moderation log; nick transfers.
ALTER TABLE messages ADD COLUMN addr_hash VARCHAR(64);

DROP PROCEDURE delete_message;
CREATE PROCEDURE delete_message(IN message_id BIGINT)
BEGIN
    DECLARE locked BIGINT;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        ROLLBACK;
        RESIGNAL;
    END;
    START TRANSACTION;
    SELECT value INTO locked FROM counters WHERE name = 'messages' FOR UPDATE;
    UPDATE messages SET kind = 'deleting' WHERE id = message_id AND kind = 'message';
    IF ROW_COUNT() > 0 THEN
        INSERT INTO messages (room, nick, text, created_at, kind, target, addr_hash)
            SELECT room, nick, '', CONCAT(LEFT(DATE_FORMAT(UTC_TIMESTAMP(3), '%Y-%m-%dT%H:%i:%s.%f'), 23), 'Z'), 'delete', id, addr_hash
            FROM messages WHERE id = message_id;
        DELETE FROM messages WHERE id = message_id;
    END IF;
    COMMIT;
END;

-- Revoke a key: DELETE FROM moderator_keys WHERE label = 'alice';
CREATE TABLE moderator_keys (
    label      VARCHAR(128) NOT NULL PRIMARY KEY,
    hash       VARCHAR(64)  NOT NULL UNIQUE,
    created_at VARCHAR(32)  NOT NULL DEFAULT (CONCAT(LEFT(DATE_FORMAT(UTC_TIMESTAMP(3), '%Y-%m-%dT%H:%i:%s.%f'), 23), 'Z'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Lift a ban by message: DELETE FROM address_bans WHERE message = 42;
CREATE TABLE address_bans (
    addr_hash  VARCHAR(64)  NOT NULL,
    message    BIGINT,
    nick       VARCHAR(255),
    until      VARCHAR(32),
    reason     TEXT,
    moderator  VARCHAR(128),
    created_at VARCHAR(32)  NOT NULL DEFAULT (CONCAT(LEFT(DATE_FORMAT(UTC_TIMESTAMP(3), '%Y-%m-%dT%H:%i:%s.%f'), 23), 'Z')),
    INDEX address_bans_hash (addr_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE moderation_log (
    id         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    created_at VARCHAR(32)  NOT NULL,
    moderator  VARCHAR(128),
    action     VARCHAR(32)  NOT NULL,
    message    BIGINT,
    nick       VARCHAR(255),
    detail     TEXT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE nick_transfers (
    code_hash VARCHAR(64)  NOT NULL PRIMARY KEY,
    nick_key  VARCHAR(768) NOT NULL,
    issued    BIGINT       NOT NULL,
    expires   VARCHAR(32)  NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- step: 5
-- Bounds on what the database keeps (see schema.sql, step 6): the
-- Idempotency-Keys of posts, who started each room, the size of all
-- messages (a trigger takes off deleted rows), when a room was last trimmed.
CREATE TABLE post_keys (
    key_hash    CHAR(64)    NOT NULL PRIMARY KEY,
    fingerprint CHAR(64)    NOT NULL,
    message_id  BIGINT      NOT NULL,
    created_at  VARCHAR(32) NOT NULL,
    claim       BIGINT      NOT NULL,
    stored_at   DOUBLE      NOT NULL,
    INDEX post_keys_stored (stored_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE room_starts (
    room       VARCHAR(32)  NOT NULL PRIMARY KEY,
    addr       VARCHAR(255) NOT NULL,
    started_at DOUBLE       NOT NULL,
    INDEX room_starts_addr (addr, started_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE sizes (
    name    VARCHAR(32) NOT NULL PRIMARY KEY,
    bytes   BIGINT      NOT NULL,
    through BIGINT      NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
INSERT INTO sizes (name, bytes, through)
    SELECT 'messages', COALESCE(SUM(LENGTH(room) + LENGTH(nick) + LENGTH(text) + COALESCE(LENGTH(addr_hash), 0) + 64), 0), COALESCE(MAX(id), 0)
    FROM messages;
CREATE TRIGGER messages_bytes_removed AFTER DELETE ON messages FOR EACH ROW
    UPDATE sizes SET bytes = bytes - (LENGTH(OLD.room) + LENGTH(OLD.nick) + LENGTH(OLD.text) + COALESCE(LENGTH(OLD.addr_hash), 0) + 64)
    WHERE name = 'messages' AND through >= OLD.id;

ALTER TABLE trimmed ADD COLUMN trimmed_at DOUBLE NOT NULL DEFAULT 0;
CREATE INDEX nick_claims_last_used ON nick_claims (last_used);

-- step: 6
-- Streams' rows are found without reading a room's or a process's others
-- (see schema.sql, step 7).
ALTER TABLE streams
    ADD INDEX streams_owner_open (owner, open),
    DROP INDEX streams_owner,
    ADD INDEX streams_room_nick (room, nick),
    DROP INDEX streams_room,
    ADD INDEX streams_addr_kind (addr, kind),
    DROP INDEX streams_addr;
