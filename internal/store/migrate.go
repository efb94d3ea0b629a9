package store

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"cgichat/internal/chat"

	"github.com/jmoiron/sqlx"
)

// stepMarker starts a numbered step in a schema file.
const stepMarker = "-- step:"

// step is one numbered part of a schema file.
type step struct {
	version int
	sql     string
}

// parseSteps splits a schema into its numbered steps, which must count up
// from 1 without gaps.
func parseSteps(schema string) ([]step, error) {
	var steps []step
	sc := bufio.NewScanner(strings.NewReader(schema))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), stepMarker); ok {
			v, err := strconv.Atoi(strings.TrimSpace(rest))
			if err != nil || v != len(steps)+1 {
				return nil, fmt.Errorf("schema: step %q should be numbered %d", rest, len(steps)+1)
			}
			steps = append(steps, step{version: v})
			continue
		}
		if len(steps) > 0 {
			steps[len(steps)-1].sql += line + "\n"
		}
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("schema: no %q line", stepMarker)
	}
	return steps, nil
}

// migrate applies every step of the backend's schema that the database has
// not seen yet.
func (s *Store) migrate(ctx context.Context) error {
	steps, err := parseSteps(s.backend.schema())
	if err != nil {
		return err
	}
	if s.backend == sqliteBackend {
		return s.migrateSQLite(ctx, steps)
	}
	return s.migrateServer(ctx, steps)
}

// newerSchema is the error for a database a newer program has migrated.
func newerSchema(have, latest int) error {
	return fmt.Errorf("the database has schema version %d, newer than this program's %d: update the programs", have, latest)
}

// migrateSQLite applies every step above the database's user_version, each
// in the same immediate transaction that raises the version, so processes
// that start together apply each step exactly once.
func (s *Store) migrateSQLite(ctx context.Context, steps []step) error {
	latest := steps[len(steps)-1].version
	var v int
	if err := s.db.GetContext(ctx, &v, "PRAGMA user_version"); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > latest {
		return newerSchema(v, latest)
	}
	if v == latest {
		return nil
	}
	return s.withTx(ctx, lockMessages, func(tx *sqlx.Tx) error {
		// Another process may have migrated since the read above.
		if err := tx.GetContext(ctx, &v, "PRAGMA user_version"); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		for _, st := range steps[v:] {
			if _, err := tx.ExecContext(ctx, st.sql); err != nil {
				return fmt.Errorf("apply schema step %d: %w", st.version, err)
			}
		}
		// PRAGMA takes no parameters; latest is our own integer.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", latest)); err != nil {
			return fmt.Errorf("set schema version: %w", err)
		}
		return nil
	})
}

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

// migrateServer brings a MySQL or PostgreSQL database up to date. The
// usual case, nothing to do, costs one query on the pool; otherwise one
// process at a time, under a lock the server keeps, applies the missing
// steps and records each in schema_migrations. PostgreSQL applies each step
// in a transaction; MySQL cannot roll back DDL, so a step that fails half
// way is reported and must be finished by hand.
func (s *Store) migrateServer(ctx context.Context, steps []step) error {
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
	db := s.db.DB
	if s.backend == mysqlBackend {
		// MySQL runs a step's statements together only on request.
		var err error
		if db, err = openMySQLMigrator(s.source); err != nil {
			return err
		}
		defer db.Close()
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
		if err := s.applyStep(ctx, conn, st); err != nil {
			return fmt.Errorf("apply schema step %d: %w", st.version, err)
		}
	}
	return nil
}

// applyStep runs one step on conn and records it, in one transaction where
// the backend can.
func (s *Store) applyStep(ctx context.Context, conn *sql.Conn, st step) error {
	stamp := s.Now().UTC().Format(chat.TimeFormat)
	if s.backend == mysqlBackend {
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
