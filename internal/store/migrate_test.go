package store

import (
	"strings"
	"testing"
)

func TestParseSteps(t *testing.T) {
	steps, err := parseSteps("-- header\n-- step: 1\nCREATE TABLE a(x);\n-- step: 2\nCREATE TABLE b(y);\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 2 || steps[0].version != 1 || steps[1].version != 2 {
		t.Fatalf("steps = %+v, want versions 1 and 2", steps)
	}
	if !strings.Contains(steps[0].sql, "TABLE a") || strings.Contains(steps[0].sql, "TABLE b") {
		t.Errorf("step 1 sql = %q, want only table a", steps[0].sql)
	}
	for _, bad := range []string{"CREATE TABLE a(x);", "-- step: 2\nX;", "-- step: 1\nX;\n-- step: 1\nY;", "-- step: one\n"} {
		if _, err := parseSteps(bad); err == nil {
			t.Errorf("parseSteps(%q): no error", bad)
		}
	}
}

func TestEmbeddedSchemasParse(t *testing.T) {
	for _, b := range []backend{sqliteDB, mysqlDB, postgresDB} {
		if _, err := parseSteps(b.schema()); err != nil {
			t.Errorf("%s: %v", b.name(), err)
		}
	}
}
