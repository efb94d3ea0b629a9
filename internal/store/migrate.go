package store

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
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
	return s.backend.migrate(ctx, s, steps)
}

// newerSchema is the error for a database a newer program has migrated.
func newerSchema(have, latest int) error {
	return fmt.Errorf("the database has schema version %d, newer than this program's %d: update the programs", have, latest)
}
