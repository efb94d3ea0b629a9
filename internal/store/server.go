//go:build !cgichat_sqlite_only

package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"cgichat/internal/chat"

	"github.com/jmoiron/sqlx"
)

// What MySQL and PostgreSQL share: writers queue on a lock row (table
// counters), as SQLite's single writer would, which also makes message ids
// visible in increasing order; schema steps are recorded in
// schema_migrations under a lock the server keeps; changes are seen by
// polling the highest message id and stream renewal, unless PostgreSQL
// announces them.

// serverBackend returns the backend of a database server's URL scheme.
func serverBackend(scheme string) (backend, error) {
	if scheme == "mysql" {
		return mysqlDB, nil
	}
	return postgresDB, nil
}

// serverPool sets what every server pool needs: shared hosts cap
// connections per user and end idle ones, so a quiet daemon gives back
// what it does not use.
func serverPool(db *sqlx.DB) *sqlx.DB {
	db.SetConnMaxIdleTime(time.Minute)
	db.SetConnMaxLifetime(30 * time.Minute)
	return db
}

func serverPoolSize(o Options) int { return o.conns() }

// The writers' lock rows.
const selectLock = `SELECT value FROM counters WHERE name = ? FOR UPDATE`

// beginLocked begins a transaction with opts and takes the lock row.
func beginLocked(ctx context.Context, s *Store, opts *sql.TxOptions, lock string) (*sqlx.Tx, error) {
	tx, err := s.db.BeginTxx(ctx, opts)
	if err != nil {
		return nil, err
	}
	var v int64
	if err := tx.QueryRowxContext(ctx, s.sql(selectLock), lock).Scan(&v); err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("take the %s lock: %w", lock, err)
	}
	return tx, nil
}

const raiseMessagesCounter = `UPDATE counters SET value = ? WHERE name = 'messages' AND value < ?`

// raiseCounter makes the next id the counters row gives above id.
func raiseCounter(ctx context.Context, s *Store, tx *sqlx.Tx, id int64) error {
	_, err := tx.ExecContext(ctx, s.sql(raiseMessagesCounter), id, id)
	return err
}

// noQueue: a server queues its writers itself, on the lock row.
func noQueue() {}

// The servers' record of applied steps, and the lock that lets one process
// at a time apply them.
const (
	createMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER     NOT NULL PRIMARY KEY,
		applied_at VARCHAR(32) NOT NULL
	)`
	selectMigrated = `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`
	insertMigrated = `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`
)

var (
	lockMigrations   = stmt{mysql: `SELECT GET_LOCK('cgichat_migrate', 60)`, postgres: `SELECT pg_advisory_lock(7478233)`}
	unlockMigrations = stmt{mysql: `SELECT RELEASE_LOCK('cgichat_migrate')`, postgres: `SELECT pg_advisory_unlock(7478233)`}
)

// migrateServer brings a server's database up to date. The usual case,
// nothing to do, costs one query on the pool; otherwise one process at a
// time, under a lock the server keeps, applies the missing steps through
// db and records each in schema_migrations, in one transaction each when
// transactional (PostgreSQL; MySQL cannot roll back DDL, so a step that
// fails half way is reported and must be finished by hand).
func migrateServer(ctx context.Context, s *Store, steps []step, db *sql.DB, transactional bool) error {
	latest := steps[len(steps)-1].version
	var v int
	if err := s.db.GetContext(ctx, &v, selectMigrated); err == nil {
		if v > latest {
			return newerSchema(v, latest)
		}
		if v == latest {
			return nil
		}
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	// GET_LOCK answers 1, pg_advisory_lock nothing (void).
	var locked any
	if err := conn.QueryRowContext(ctx, s.dialect(lockMigrations)).Scan(&locked); err != nil {
		return fmt.Errorf("wait for other processes to migrate: %w", err)
	}
	defer func() {
		conn.QueryRowContext(context.WithoutCancel(ctx), s.dialect(unlockMigrations)).Scan(&locked)
	}()
	if _, err := conn.ExecContext(ctx, createMigrations); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	// Another process may have migrated since the read above.
	if err := conn.QueryRowContext(ctx, selectMigrated).Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > latest {
		return newerSchema(v, latest)
	}
	for _, st := range steps[v:] {
		if err := applyStep(ctx, s, conn, st, transactional); err != nil {
			return fmt.Errorf("apply schema step %d: %w", st.version, err)
		}
	}
	return nil
}

// applyStep runs one step on conn and records it, in one transaction when
// transactional.
func applyStep(ctx context.Context, s *Store, conn *sql.Conn, st step, transactional bool) error {
	stamp := s.Now().UTC().Format(chat.TimeFormat)
	if !transactional {
		if _, err := conn.ExecContext(ctx, st.sql); err != nil {
			return err
		}
		_, err := conn.ExecContext(ctx, s.sql(insertMigrated), st.version, stamp)
		return err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, st.sql); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.sql(insertMigrated), st.version, stamp); err != nil {
		return err
	}
	return tx.Commit()
}

// selectChangeMark is what changes when a message (or a tombstone) is
// added or a stream opens, closes or is renewed: both maxima come from an
// index.
const selectChangeMark = `SELECT (SELECT COALESCE(MAX(id), 0) FROM messages),
	(SELECT COALESCE(MAX(seen_at), 0) FROM streams)`

// pollChanges compares the change mark with the previous one.
func pollChanges(ctx context.Context, s *Store) (*Changes, error) {
	var lastID int64
	var lastSeen float64
	c := &Changes{close: func() error { return nil }}
	c.check = func(ctx context.Context) (bool, error) {
		var id int64
		var seen float64
		if err := s.db.QueryRowxContext(ctx, selectChangeMark).Scan(&id, &seen); err != nil {
			return false, internal(err, "read the change mark")
		}
		changed := id != lastID || seen != lastSeen
		lastID, lastSeen = id, seen
		return changed, nil
	}
	if _, err := c.check(ctx); err != nil {
		return nil, err
	}
	return c, nil
}
