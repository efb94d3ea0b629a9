package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cgichat/internal/sse"
	"cgichat/test/hostkit"
)

// Bounds of the load generator: every loop ends by count or time.
const (
	loadLifetime    = 2 * time.Hour    // the process exits after this, whatever happens
	commandTimeout  = 10 * time.Minute // one command
	postTimeout     = 10 * time.Second // one post
	liveDelivery    = 10 * time.Second // a post reaches every live stream within this, or counts lost
	batchDelivery   = 30 * time.Second // … every batch stream (a reconnect may wait for a slot)
	pollDelivery    = 90 * time.Second // … every stream that may poll (30 s apart at most, and slow)
	maxConnects     = 100000           // responses one stream may open in its life
	maxStreams      = 20000
	openAtOnce      = 256              // streams opening at once (not yet ready)
	openWait        = 30 * time.Second // a stream not ready by then no longer holds its place
	maxPosters      = 256
	maxSteps        = 12
	maxPostsPerStep = 200000
)

// loadMain runs the load generator: commands on in, replies on out, until
// in ends. The target's base URL is in CGICHAT_BENCH_URL.
func loadMain(in io.Reader, out io.Writer) int {
	base := os.Getenv(urlEnv)
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		fmt.Fprintf(os.Stderr, "bench load: %s must be http://127.0.0.1:PORT (loopback only), not %q\n", urlEnv, base)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), loadLifetime)
	defer cancel()
	lg := newLoadgen(base)
	defer lg.closeStreams()
	sc := bufio.NewScanner(in)
	enc := json.NewEncoder(out)
	for sc.Scan() && ctx.Err() == nil {
		var req request
		var rep reply
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			rep.Error = "bad request: " + err.Error()
		} else {
			cctx, ccancel := context.WithTimeout(ctx, commandTimeout)
			rep = lg.do(cctx, req)
			ccancel()
		}
		if err := enc.Encode(rep); err != nil {
			return 1
		}
	}
	return 0
}

// loadgen holds the streams it opened and the HTTP clients.
type loadgen struct {
	base     string
	streamTr *http.Transport // one connection per open stream
	postTr   *http.Transport // shared by posters, each with its own cookies
	streams  []*stream
	stalled  []net.Conn // stalled readers: connections that never read
	// The streams' context: ended by closeStreams.
	streamsCtx context.Context
	stopAll    context.CancelFunc
	streamsWG  sync.WaitGroup
}

func newLoadgen(base string) *loadgen {
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	return &loadgen{
		base:     base,
		streamTr: &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: maxStreams, IdleConnTimeout: time.Minute},
		postTr:   &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: maxPosters, IdleConnTimeout: time.Minute},
	}
}

func (lg *loadgen) do(ctx context.Context, req request) reply {
	var rep reply
	var err error
	switch req.Op {
	case "open":
		rep.Open, err = lg.open(ctx, req)
	case "close":
		lg.closeStreams()
	case "fill":
		rep.Fill, err = lg.fill(ctx, req)
	case "stall":
		rep.Open, err = lg.stall(ctx, req)
	case "latency":
		rep.Latency, err = lg.latency(ctx, req)
	case "fanout":
		rep.Fanout, err = lg.fanout(ctx, req)
	case "throughput":
		rep.Throughput, err = lg.throughput(ctx, req)
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	if err != nil {
		rep.Error = err.Error()
	}
	return rep
}

// stream reads one room the way EventSource does (hostkit.EventSource),
// as a reader of its own (reader=), and records when each message id
// first arrived.
type stream struct {
	es        *hostkit.EventSource
	ready     chan struct{} // closed at the first ready event
	readyOnce sync.Once

	mu      sync.Mutex
	arrived map[int64]time.Time
}

func (s *stream) arrival(id int64) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.arrived[id]
	return at, ok
}

// newStream returns a stream of room at base, not yet running.
func newStream(lg *loadgen, room string) *stream {
	var id [8]byte
	rand.Read(id[:])
	s := &stream{ready: make(chan struct{}), arrived: make(map[int64]time.Time)}
	s.es = &hostkit.EventSource{
		URL:      lg.base + "/cgi-bin/stream?room=" + url.QueryEscape(room) + "&reader=" + hex.EncodeToString(id[:]),
		Client:   &http.Client{Transport: lg.streamTr},
		Connects: maxConnects,
		OnEvent: func(ev sse.Event, at time.Time) {
			switch ev.Type {
			case "ready":
				s.readyOnce.Do(func() { close(s.ready) })
			case "message":
				// A message's event id is its id (docs/contract.md): read
				// from there, not from its JSON, the load generator's own
				// cost per event stays small beside the host's.
				if id, err := strconv.ParseInt(ev.ID, 10, 64); err == nil && id > 0 {
					s.mu.Lock()
					if _, ok := s.arrived[id]; !ok {
						s.arrived[id] = at
					}
					s.mu.Unlock()
				}
			}
		},
	}
	return s
}

// open starts req.Streams streams of req.Room and, when asked, waits until
// each has sent its ready event.
func (lg *loadgen) open(ctx context.Context, req request) (*openResult, error) {
	if req.Streams < 0 || req.Streams > maxStreams || len(lg.streams)+req.Streams > maxStreams {
		return nil, fmt.Errorf("open: %d streams is more than %d", req.Streams, maxStreams)
	}
	if lg.stopAll == nil {
		lg.streamsCtx, lg.stopAll = context.WithCancel(context.Background())
	}
	began := time.Now()
	// A few hundred at a time, as many as become ready: thousands of
	// connections at once would overflow the web server's listen queue.
	slots := make(chan struct{}, openAtOnce)
	closed := lg.streamsCtx.Done()
	for range req.Streams {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return &openResult{Streams: len(lg.streams), Seconds: time.Since(began).Seconds()}, fmt.Errorf("open: %d streams started when the command timed out", len(lg.streams))
		}
		s := newStream(lg, req.Room)
		lg.streams = append(lg.streams, s)
		lg.streamsWG.Go(func() { s.es.Run(lg.streamsCtx) })
		go func() {
			t := time.NewTimer(openWait)
			defer t.Stop()
			select {
			case <-s.ready:
			case <-t.C:
			case <-closed:
			}
			<-slots
		}()
	}
	res := &openResult{Streams: len(lg.streams)}
	if !req.WaitReady {
		res.Seconds = time.Since(began).Seconds()
		return res, nil
	}
	for _, s := range lg.streams {
		select {
		case <-s.ready:
			res.Ready++
		case <-ctx.Done():
			res.Seconds = time.Since(began).Seconds()
			return res, fmt.Errorf("open: %d of %d streams ready when the command timed out; a stream's last error: %s", res.Ready, len(lg.streams), lg.errorSample())
		}
	}
	res.Seconds = time.Since(began).Seconds()
	return res, nil
}

// closeStreams drops every stream's connection, as closing tabs does,
// and every stalled reader's.
func (lg *loadgen) closeStreams() {
	if lg.stopAll != nil {
		lg.stopAll()
		lg.streamsWG.Wait()
	}
	for _, c := range lg.stalled {
		c.Close()
	}
	lg.streams, lg.stalled, lg.streamsCtx, lg.stopAll = nil, nil, nil, nil
}

// errorSample returns one stream's last error, if any had one.
func (lg *loadgen) errorSample() string {
	for _, s := range lg.streams {
		if e := s.es.LastError(); e != "" {
			return e
		}
	}
	return ""
}

// counts returns what the streams counted so far, summed.
func (lg *loadgen) counts() hostkit.EventSourceStats {
	var sum hostkit.EventSourceStats
	for _, s := range lg.streams {
		sum.Add(s.es.Stats())
	}
	return sum
}

// delivered is one post as the poster saw it.
type delivered struct {
	id   int64
	at   time.Time // when its 201 had been read
	sent time.Time // when the request was about to be sent
}

// waitDelivered waits until every stream has every post, or timeout; it
// returns how many (post, stream) pairs are still missing.
func (lg *loadgen) waitDelivered(ctx context.Context, posts []delivered, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		missing := 0
		for _, s := range lg.streams {
			for _, p := range posts {
				if _, ok := s.arrival(p.id); !ok {
					missing++
				}
			}
		}
		if missing == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return missing
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func deliveryTimeout(req request) time.Duration {
	switch {
	case req.Poll:
		return pollDelivery
	case req.Batch:
		return batchDelivery
	}
	return liveDelivery
}

// latency posts at req.Rate for req.Seconds, from a few posters so that
// one slow answer does not hold the schedule, and measures each post's
// arrival at every stream.
func (lg *loadgen) latency(ctx context.Context, req request) (*latencyResult, error) {
	if len(lg.streams) == 0 || req.Rate <= 0 || req.Seconds <= 0 {
		return nil, errors.New("latency: needs open streams, a rate and a duration")
	}
	n := int(math.Round(req.Rate * req.Seconds))
	if n < 1 || n > maxPostsPerStep {
		return nil, fmt.Errorf("latency: %d posts is out of bounds", n)
	}
	c0 := lg.counts()
	cpu0 := selfCPU()
	posters := newPosters(lg, "lat", min(8, max(2, int(req.Rate/10))))
	tokens := make(chan int, n)
	var mu sync.Mutex
	var posts []delivered
	errs, errSample := 0, ""
	var wg sync.WaitGroup
	for _, p := range posters {
		wg.Go(func() {
			for i := range tokens {
				sent := time.Now()
				id, at, err := p.post(ctx, req.Room, fmt.Sprintf("latency %d", i))
				mu.Lock()
				if err != nil {
					errs++
					errSample = err.Error()
				} else {
					posts = append(posts, delivered{id, at, sent})
				}
				mu.Unlock()
			}
		})
	}
	// An open-loop schedule: post i is due at i/rate.
	began := time.Now()
	for i := range n {
		due := began.Add(time.Duration(float64(i) / req.Rate * float64(time.Second)))
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(due)):
		}
		if ctx.Err() != nil {
			break
		}
		tokens <- i
	}
	close(tokens)
	wg.Wait()
	elapsed := time.Since(began)
	lost := lg.waitDelivered(ctx, posts, deliveryTimeout(req))
	loadCPU := (selfCPU() - cpu0).Seconds()
	var ms, fromSend []float64
	for _, s := range lg.streams {
		for _, p := range posts {
			if at, ok := s.arrival(p.id); ok {
				ms = append(ms, max(0, at.Sub(p.at).Seconds()*1000))
				fromSend = append(fromSend, at.Sub(p.sent).Seconds()*1000)
			}
		}
	}
	c1 := lg.counts()
	res := &latencyResult{
		Streams: len(lg.streams), Posts: len(posts), PostErrors: errs,
		Rate: float64(len(posts)) / elapsed.Seconds(), Samples: len(ms), Lost: lost,
		Reconnects: c1.Ended - c0.Ended, StreamErrors: c1.Failed - c0.Failed, ErrorSample: errSample,
		StreamRequests: c1.Requests - c0.Requests,
		TailRequests:   c1.TailRequests - c0.TailRequests, TailUnchanged: c1.TailUnchanged - c0.TailUnchanged,
		TailEvents: c1.TailEvents - c0.TailEvents, TailGaps: c1.TailGaps - c0.TailGaps, TailFailed: c1.TailFailed - c0.TailFailed,
		LoadCPUSeconds: loadCPU, LoadCPUPercent: loadCPU / time.Since(began).Seconds() * 100,
	}
	if res.ErrorSample == "" && res.StreamErrors > 0 {
		res.ErrorSample = lg.errorSample()
	}
	if res.TailFailed > 0 {
		for _, s := range lg.streams {
			res.TailErrorSample = cmp.Or(res.TailErrorSample, s.es.LastTailError())
		}
	}
	res.P50, res.P95, res.P99, res.Max = percentiles(ms)
	res.SendP50, _, res.SendP99, _ = percentiles(fromSend)
	return res, nil
}

// fanout posts req.Posts messages one at a time and measures, for each,
// the time from its 201 until the last stream had it.
func (lg *loadgen) fanout(ctx context.Context, req request) (*fanoutResult, error) {
	if len(lg.streams) == 0 || req.Posts < 1 || req.Posts > 1000 {
		return nil, errors.New("fanout: needs open streams and 1 to 1000 posts")
	}
	p := newPosters(lg, "fan", 1)[0]
	res := &fanoutResult{Streams: len(lg.streams)}
	// In batch mode every stream reconnects after a message: give them
	// time to be back before the next post.
	gap := 300 * time.Millisecond
	if req.Batch {
		gap = 1500 * time.Millisecond
	}
	for i := range req.Posts {
		if ctx.Err() != nil {
			break
		}
		id, at, err := p.post(ctx, req.Room, fmt.Sprintf("fan-out %d", i))
		if err != nil {
			res.ErrorSample = err.Error()
			continue
		}
		res.Posts++
		missing := lg.waitDelivered(ctx, []delivered{{id: id, at: at}}, deliveryTimeout(req))
		res.Lost += missing
		var last time.Time
		for _, s := range lg.streams {
			if a, ok := s.arrival(id); ok && a.After(last) {
				last = a
			}
		}
		if missing == 0 {
			res.Times = append(res.Times, max(0, last.Sub(at).Seconds()*1000))
		}
		time.Sleep(gap)
	}
	if len(res.Times) > 0 {
		res.Median, _, _, _ = percentiles(res.Times)
		res.Worst = slices.Max(res.Times)
	}
	return res, nil
}

// throughput warms the host up (mod_fcgid starts its post processes on
// demand), probes how fast req.Posters closed-loop posters can post, then
// searches, in at most req.Steps open-loop runs, for the highest rate they
// sustain with no error: a run passes when every post got its 201, none
// was due while every poster was busy and queued, and 97 % of the target
// was reached. The search starts at 90 % of the probe, grows by a quarter
// while runs pass and halves the gap once one has failed.
func (lg *loadgen) throughput(ctx context.Context, req request) (*throughputResult, error) {
	if req.Posters < 1 || req.Posters > maxPosters || req.Seconds <= 0 || req.Steps < 0 || req.Steps > maxSteps {
		return nil, errors.New("throughput: needs 1 to 256 posters, a step length and at most 12 steps")
	}
	posters := newPosters(lg, "tp", req.Posters)
	d := time.Duration(req.Seconds * float64(time.Second))
	res := &throughputResult{Posters: req.Posters, Streams: len(lg.streams)}
	runStep(ctx, posters, req.Room, 0, min(d, 2*time.Second))
	res.Probe = runStep(ctx, posters, req.Room, 0, d)
	lo, hi := 0.0, math.Inf(1)
	target := math.Floor(res.Probe.Achieved * 0.9)
	for range req.Steps {
		if target < 1 || ctx.Err() != nil {
			break
		}
		st := runStep(ctx, posters, req.Room, target, d)
		res.Steps = append(res.Steps, st)
		if st.Pass {
			lo = target
			res.Best = max(res.Best, target)
		} else {
			hi = target
		}
		next := math.Floor((lo + hi) / 2)
		if math.IsInf(hi, 1) {
			next = math.Floor(target * 1.25)
		} else if hi-lo < max(2, 0.03*hi) {
			break
		}
		if next == target {
			break
		}
		target = next
	}
	return res, nil
}

// runStep runs posters for d: closed loop when target is 0, else at target
// posts per second.
func runStep(ctx context.Context, posters []*poster, room string, target float64, d time.Duration) step {
	st := step{Target: target}
	var mu sync.Mutex
	var ms []float64
	var ok, errs, dropped atomic.Int64
	record := func(began time.Time, err error) {
		if err != nil {
			errs.Add(1)
			mu.Lock()
			st.ErrorSample = err.Error()
			mu.Unlock()
			return
		}
		ok.Add(1)
		mu.Lock()
		ms = append(ms, time.Since(began).Seconds()*1000)
		mu.Unlock()
	}
	began := time.Now()
	end := began.Add(d)
	var wg sync.WaitGroup
	if target == 0 {
		for i, p := range posters {
			wg.Go(func() {
				for n := 0; n < maxPostsPerStep && time.Now().Before(end) && ctx.Err() == nil; n++ {
					t := time.Now()
					_, _, err := p.post(ctx, room, fmt.Sprintf("closed %d/%d", i, n))
					record(t, err)
				}
			})
		}
	} else {
		// Posts wait their turn up to a tenth of a second's worth; a post
		// due while that queue is full is dropped: the rate is not
		// sustained.
		tokens := make(chan int, max(len(posters), int(target/10)))
		for _, p := range posters {
			wg.Go(func() {
				for n := range tokens {
					t := time.Now()
					_, _, err := p.post(ctx, room, fmt.Sprintf("open %d", n))
					record(t, err)
				}
			})
		}
		// Every millisecond, hand out the posts due by then.
		due := 0
		for time.Now().Before(end) && ctx.Err() == nil && due < maxPostsPerStep {
			for want := int(time.Since(began).Seconds() * target); due < want; due++ {
				select {
				case tokens <- due:
				default:
					dropped.Add(1)
				}
			}
			time.Sleep(time.Millisecond)
		}
		close(tokens)
	}
	wg.Wait()
	st.Seconds = time.Since(began).Seconds()
	st.OK, st.Errors, st.Dropped = int(ok.Load()), int(errs.Load()), int(dropped.Load())
	st.Achieved = float64(st.OK) / d.Seconds()
	st.P50, _, st.P99, _ = percentiles(ms)
	st.Pass = target > 0 && st.Errors == 0 && st.Dropped == 0 && st.Achieved >= 0.97*target
	return st
}

// poster posts as one browser: its own nick and cookies (so its nick claim).
type poster struct {
	base, nick string
	client     *http.Client
}

// newPosters returns n posters with fresh nicks.
func newPosters(lg *loadgen, prefix string, n int) []*poster {
	var b [3]byte
	rand.Read(b[:])
	ps := make([]*poster, n)
	for i := range ps {
		jar, _ := cookiejar.New(nil)
		ps[i] = &poster{
			base:   lg.base,
			nick:   fmt.Sprintf("%s%d-%s", prefix, i, hex.EncodeToString(b[:])),
			client: &http.Client{Transport: lg.postTr, Jar: jar, Timeout: postTimeout},
		}
	}
	return ps
}

// post sends one message and returns its id and when its 201 had been read.
func (p *poster) post(ctx context.Context, room, text string) (int64, time.Time, error) {
	form := url.Values{"room": {room}, "nick": {p.nick}, "text": {text}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/cgi-bin/post", strings.NewReader(form.Encode()))
	if err != nil {
		return 0, time.Time{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, time.Time{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	at := time.Now()
	if err != nil {
		return 0, at, err
	}
	if resp.StatusCode != http.StatusCreated {
		return 0, at, fmt.Errorf("post: status %d: %.200s", resp.StatusCode, body)
	}
	var m struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal(body, &m); err != nil || m.ID == 0 {
		return 0, at, fmt.Errorf("post: body %.200q is not a stored message", body)
	}
	return m.ID, at, nil
}

// percentiles returns the nearest-rank p50, p95, p99 and the maximum of
// xs (zeros for none).
func percentiles(xs []float64) (p50, p95, p99, most float64) {
	if len(xs) == 0 {
		return 0, 0, 0, 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return rank(0.50), rank(0.95), rank(0.99), s[len(s)-1]
}
