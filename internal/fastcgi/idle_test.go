package fastcgi

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"cgichat/internal/fastcgi/record"
)

// BenchmarkIdleRequests measures what an open request costs the responder
// while its handler waits, as an idle event stream does: Go heap and
// goroutine stacks per request, client side included (a net.Conn each).
func BenchmarkIdleRequests(b *testing.B) {
	const n = 1000
	release := make(chan struct{})
	var running, ended sync.WaitGroup
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer ended.Done()
		io.WriteString(w, "opened\n")
		w.(http.Flusher).Flush()
		running.Done()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	sock := filepath.Join(b.TempDir(), "fcgi.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go Serve(l, h)
	var request []byte
	request = record.Append(request, record.BeginRequest, 1, []byte{0, record.RoleResponder, 0, 0, 0, 0, 0, 0})
	request = record.AppendStream(request, record.Params, 1, record.AppendPairs(nil,
		"REQUEST_METHOD", "GET", "SERVER_PROTOCOL", "HTTP/1.1", "REQUEST_URI", "/cgi-bin/stream?room=lobby",
		"QUERY_STRING", "room=lobby", "SCRIPT_NAME", "/cgi-bin/stream", "HTTP_ACCEPT", "text/event-stream",
		"REMOTE_ADDR", "127.0.0.1", "REMOTE_PORT", "40000", "SERVER_NAME", "localhost", "SERVER_PORT", "80"))
	request = record.AppendStream(request, record.Stdin, 1, nil)

	var heap, stack float64
	for range b.N {
		release = make(chan struct{})
		beforeHeap, beforeStack := usage()
		running.Add(n)
		ended.Add(n)
		conns := make([]net.Conn, 0, n)
		for range n {
			c, err := net.Dial("unix", sock)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Write(request); err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		running.Wait()
		// Let the responder read what follows the request, as it would
		// while a stream is idle.
		time.Sleep(100 * time.Millisecond)
		afterHeap, afterStack := usage()
		heap, stack = float64(afterHeap-beforeHeap)/n, float64(afterStack-beforeStack)/n
		close(release)
		ended.Wait()
		for _, c := range conns {
			c.Close()
		}
	}
	b.ReportMetric(heap+stack, "B/idle-request")
	b.ReportMetric(heap, "heap-B/idle-request")
	b.ReportMetric(stack, "stack-B/idle-request")
}

// usage returns the bytes of Go heap and of goroutine stacks in use,
// after a collection.
func usage() (heap, stack uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.StackInuse
}
