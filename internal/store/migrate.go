package store

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jmoiron/sqlx"
)

// stepMarker starts a numbered step in schema.sql.
const stepMarker = "-- step:"

// step is one numbered part of schema.sql.
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

// migrate applies every step above the database's user_version, each in
// the same immediate transaction that raises the version, so processes that
// start together apply each step exactly once.
func (s *Store) migrate(ctx context.Context) error {
	steps, err := parseSteps(schema())
	if err != nil {
		return err
	}
	latest := steps[len(steps)-1].version
	var v int
	if err := s.db.GetContext(ctx, &v, "PRAGMA user_version"); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > latest {
		return fmt.Errorf("the database has schema version %d, newer than this program's %d: update the programs", v, latest)
	}
	if v == latest {
		return nil
	}
	return s.withTx(ctx, func(tx *sqlx.Tx) error {
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
