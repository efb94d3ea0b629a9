package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The load generator's side of stalled readers: a room filled with long
// messages, and connections that ask for a stream and never read it.

// stallRcvBuf is a stalled reader's socket receive buffer: small, so that
// the host, not the kernel between, holds what the reader does not take.
const stallRcvBuf = 4096

// fillResult says how filling a room went.
type fillResult struct {
	Posts       int     `json:"posts"`
	Errors      int     `json:"errors"`
	Seconds     float64 `json:"seconds"`
	ErrorSample string  `json:"error_sample,omitempty"`
}

// fill posts req.Posts messages of req.TextLen '<' to req.Room from
// req.Posters posters: as fast as they go, or at req.Rate posts/s.
func (lg *loadgen) fill(ctx context.Context, req request) (*fillResult, error) {
	if req.Posts < 1 || req.Posts > maxPostsPerStep || req.Posters < 1 || req.Posters > maxPosters || req.TextLen < 1 || req.TextLen > 2000 {
		return nil, errors.New("fill: needs 1 to 200,000 posts, 1 to 256 posters and a text of 1 to 2,000 characters")
	}
	text := strings.Repeat("<", req.TextLen)
	posters := newPosters(lg, "fill", req.Posters)
	tokens := make(chan int)
	var mu sync.Mutex
	res := &fillResult{}
	var wg sync.WaitGroup
	for _, p := range posters {
		wg.Go(func() {
			for range tokens {
				_, _, err := p.post(ctx, req.Room, text)
				mu.Lock()
				if err != nil {
					res.Errors++
					res.ErrorSample = err.Error()
				} else {
					res.Posts++
				}
				mu.Unlock()
			}
		})
	}
	began := time.Now()
	for i := range req.Posts {
		if req.Rate > 0 {
			due := began.Add(time.Duration(float64(i) / req.Rate * float64(time.Second)))
			t := time.NewTimer(time.Until(due))
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case tokens <- i:
		case <-ctx.Done():
		}
	}
	close(tokens)
	wg.Wait()
	res.Seconds = time.Since(began).Seconds()
	return res, ctx.Err()
}

// stall opens req.Streams connections that each ask for a stream of
// req.Room (from its first message with req.Resume: lastEventId=0) and
// then never read, with a small receive buffer; closeStreams ends them.
func (lg *loadgen) stall(ctx context.Context, req request) (*openResult, error) {
	if req.Streams < 1 || len(lg.stalled)+req.Streams > maxStreams {
		return nil, fmt.Errorf("stall: 1 to %d readers", maxStreams)
	}
	u, err := url.Parse(lg.base)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{
		Timeout: 10 * time.Second,
		// Before connect, so that the window the host sees is small.
		Control: func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, stallRcvBuf)
			})
			return errors.Join(err, serr)
		},
	}
	query := "room=" + url.QueryEscape(req.Room)
	if req.Resume {
		query += "&lastEventId=0"
	}
	began := time.Now()
	for range req.Streams {
		var id [8]byte
		rand.Read(id[:])
		c, err := dialer.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return &openResult{Streams: len(lg.stalled), Seconds: time.Since(began).Seconds()}, fmt.Errorf("stall: %w", err)
		}
		lg.stalled = append(lg.stalled, c)
		get := "GET /cgi-bin/stream?" + query + "&reader=" + hex.EncodeToString(id[:]) + " HTTP/1.1\r\n" +
			"Host: " + u.Host + "\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
		if _, err := c.Write([]byte(get)); err != nil {
			return &openResult{Streams: len(lg.stalled), Seconds: time.Since(began).Seconds()}, fmt.Errorf("stall: %w", err)
		}
	}
	return &openResult{Streams: len(lg.stalled), Seconds: time.Since(began).Seconds()}, nil
}

// selfCPU returns the CPU time this process has used, every thread.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
