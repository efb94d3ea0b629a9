package integration

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"cgichat/test/fcgiclient"
)

// TestWebServerLeaves closes the web server's connection to an open
// stream, as nginx does when the browser leaves, in both FastCGI modes.
// The stream must end because the connection was read to its end, not at
// its next write: the heartbeat is as long as it may be, and the stream's
// end is logged with the session's reason for an ended context, not the
// write loop's "client gone".
func TestWebServerLeaves(t *testing.T) {
	env := map[string]string{"CHAT_HEARTBEAT_SECONDS": "30", "CHAT_LOG_LEVEL": "debug"}
	tests := []struct {
		name  string
		start func(*testing.T, io.Writer) *daemon
	}{
		{"Daemon", func(t *testing.T, log io.Writer) *daemon { return startRawDaemon(t, "stream", env, 0, log) }},
		{"FastCGIStdin", func(t *testing.T, log io.Writer) *daemon { return startRawStdin(t, "stream", "unix", env, log) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var log syncBuffer
			d := tt.start(t, &log)
			c := d.openStream(t, "room=lobby")
			c.Close()
			var ended map[string]string
			for deadline := time.Now().Add(60 * time.Second); ended == nil; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("no end of the stream logged:\n%s", log.String())
				}
				ended = logLine(log.String(), `msg="stream ended"`)
			}
			if ended["reason"] == "client gone" {
				t.Errorf("the stream ended at a failed write (%v), not when its connection closed", ended)
			}
		})
	}
}

// TestWebServerAddrsStdin starts the post program with a TCP listening
// socket as stdin and FCGI_WEB_SERVER_ADDRS set: a connection from an
// address in the list is served, one from any other is closed unanswered
// (the FastCGI specification, section 3.2).
func TestWebServerAddrsStdin(t *testing.T) {
	tests := []struct {
		name, addrs, from string
		served            bool
	}{
		{"Listed", "127.0.0.1", "127.0.0.1", true},
		{"ListedAmongOthers", "199.170.183.28,127.0.0.3", "127.0.0.3", true},
		{"NotListed", "199.170.183.28,199.170.183.71", "127.0.0.1", false},
		{"AnotherLoopback", "127.0.0.2", "127.0.0.3", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := startRawStdin(t, "post", "tcp", map[string]string{"FCGI_WEB_SERVER_ADDRS": tt.addrs}, nil)
			dialer := net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(tt.from)}}
			c, err := dialer.Dial("tcp", d.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			body := `{"nick":"ada","text":"hi"}`
			if _, err := c.Write(fcgiclient.Request(1, false, postParams(len(body)), []byte(body))); err != nil && tt.served {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(c)
			if served := strings.Contains(string(out), "Status: 201"); served != tt.served {
				t.Errorf("from %s with FCGI_WEB_SERVER_ADDRS=%s: got %q, want served %v", tt.from, tt.addrs, out, tt.served)
			}
			if !tt.served && len(out) > 0 {
				t.Errorf("a refused connection got %d bytes, want none", len(out))
			}
		})
	}
}
