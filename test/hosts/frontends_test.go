package hosts

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"cgichat/test/dbtest"
	"cgichat/test/hostkit"
)

// acrossLatency bounds a post's trip from one front end to a stream on
// the other: the other host's programs learn of it by polling every
// CHAT_POLL_MS (25 ms by default on a database server) or, a PostgreSQL
// daemon, at once by NOTIFY.
const acrossLatency = time.Second

// TestTwoFrontEnds runs two web hosts on one database server, as behind a
// load balancer: A is nginx in front of the daemons, B Apache running the
// programs under mod_cgid, each deployed by deploy.sh into a directory of
// its own, so no wake-up crosses between them. A post on either reaches a
// stream on the other, and a reader whose connections go to A and B in turn
// gets every message once, in order.
func TestTwoFrontEnds(t *testing.T) {
	hostkit.RequireTools(t, hostkit.ApacheBin, hostkit.NginxBin)
	hostkit.WarmBuild(t)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, b := range dbtest.Servers {
		wg.Go(func() { t.Run(string(b), func(t *testing.T) { testTwoFrontEnds(t, b) }) })
	}
}

func testTwoFrontEnds(t *testing.T, b dbtest.Backend) {
	a := newHost(t, lookupSetup(t, "nginx-daemon"), b)
	c := newHost(t, lookupSetup(t, "apache-mod_cgid"), dbtest.SQLite)
	c.DB = a.DB
	hosts := []*hostkit.Host{a, c}
	for _, h := range hosts {
		h.Deploy(t, "--env", "CHAT_STREAM_SECONDS=2")
		h.Start(t)
	}
	clients := []*client{newClient(a.URL), newClient(c.URL)}
	t.Run("across", func(t *testing.T) {
		for from := range hosts {
			to := 1 - from
			room := hostkit.NewRoom("across")
			s := clients[to].openStream(room, "")
			if _, ok := s.next("ready", 10*time.Second); !ok {
				t.Fatalf("%s: no ready event within 10 s: %v", hosts[to].Setup.Name, s.result(time.Second))
			}
			for i := range 3 {
				m, at := clients[from].post(t, room, fmt.Sprint("ada", from), fmt.Sprint("hello ", i))
				ev, ok := s.next("message", 5*time.Second)
				if !ok {
					t.Fatalf("post %d (id %d) on %s: no event on %s within 5 s", i, m.ID, hosts[from].Setup.Name, hosts[to].Setup.Name)
				}
				if got := decode(t, ev); got != m {
					t.Errorf("got event %+v, want %+v", got, m)
				}
				latency := ev.at.Sub(at)
				t.Logf("%s: post on %s, event on %s %v after the 201", b, hosts[from].Setup.Name, hosts[to].Setup.Name, latency.Round(100*time.Microsecond))
				if latency > acrossLatency {
					t.Errorf("post %d: the event arrived %v after the 201, want at most %v", i, latency, acrossLatency)
				}
			}
			s.close()
		}
	})
	t.Run("resume", func(t *testing.T) {
		resumeAcross(t, string(b)+" A and B", clients, clients)
	})
}
