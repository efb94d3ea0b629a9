package dbtest_test

import (
	"os"
	"testing"

	"cgichat/internal/store"
	"cgichat/test/dbtest"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// TestNew checks that each server gives a database the programs' account
// can create tables in, and that two tests get two databases.
func TestNew(t *testing.T) {
	for _, b := range dbtest.Servers {
		t.Run(string(b), func(t *testing.T) {
			a, other := dbtest.New(t, b), dbtest.New(t, b)
			if a == other {
				t.Fatalf("two databases with one URL %s", a)
			}
			db, err := store.Connect(a)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec("CREATE TABLE x (id INTEGER PRIMARY KEY)"); err != nil {
				t.Fatalf("create a table in %s: %v", a, err)
			}
		})
	}
}
