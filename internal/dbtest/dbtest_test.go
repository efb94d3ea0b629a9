package dbtest

import (
	"database/sql"
	"os"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestNew checks that each server gives a database the programs' account
// can create tables in, and that two tests get two databases.
func TestNew(t *testing.T) {
	for _, b := range Servers {
		t.Run(string(b), func(t *testing.T) {
			a, other := New(t, b), New(t, b)
			if a == other {
				t.Fatalf("two databases with one URL %s", a)
			}
			db := open(t, a)
			if _, err := db.Exec("CREATE TABLE x (id INTEGER PRIMARY KEY)"); err != nil {
				t.Fatalf("create a table in %s: %v", a, err)
			}
		})
	}
}

// open connects to a URL from New with the driver of its scheme.
func open(t *testing.T, url string) *sql.DB {
	t.Helper()
	var db *sql.DB
	var err error
	if rest, ok := strings.CutPrefix(url, "mysql://"); ok {
		// user:pw@127.0.0.1:port/name → user:pw@tcp(127.0.0.1:port)/name
		at := strings.LastIndex(rest, "@")
		slash := strings.Index(rest[at:], "/") + at
		var cfg *mysql.Config
		cfg, err = mysql.ParseDSN(rest[:at+1] + "tcp(" + rest[at+1:slash] + ")" + rest[slash:])
		if err == nil {
			db, err = sql.Open("mysql", cfg.FormatDSN())
		}
	} else {
		db, err = sql.Open("pgx", url)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
