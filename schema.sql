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
