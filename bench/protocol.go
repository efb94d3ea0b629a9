package main

// The orchestrator drives the load generator, a second process, with one
// JSON request per line on its stdin; it answers each with one JSON reply
// per line on its stdout.

// request is one command to the load generator.
type request struct {
	Op        string  `json:"op"` // open, close, latency, fanout, throughput, fill, stall
	Room      string  `json:"room,omitempty"`
	Streams   int     `json:"streams,omitempty"`    // open: how many
	WaitReady bool    `json:"wait_ready,omitempty"` // open: until each has its ready event
	Batch     bool    `json:"batch,omitempty"`      // the streams answer in batch mode
	Poll      bool    `json:"poll,omitempty"`       // some streams may poll (a budget), up to 30 s apart
	Rate      float64 `json:"rate,omitempty"`       // latency: posts per second
	Seconds   float64 `json:"seconds,omitempty"`    // latency: how long to post; throughput: one step
	Posts     int     `json:"posts,omitempty"`      // fanout: how many posts, one at a time
	Posters   int     `json:"posters,omitempty"`    // throughput: concurrent posters
	Steps     int     `json:"steps,omitempty"`      // throughput: rate steps after the probe
	TextLen   int     `json:"text_len,omitempty"`   // fill: characters per message
	Resume    bool    `json:"resume,omitempty"`     // stall: ask from the first message (lastEventId=0)
}

// reply is the load generator's answer to one request.
type reply struct {
	Error      string            `json:"error,omitempty"`
	Open       *openResult       `json:"open,omitempty"`
	Latency    *latencyResult    `json:"latency,omitempty"`
	Fanout     *fanoutResult     `json:"fanout,omitempty"`
	Throughput *throughputResult `json:"throughput,omitempty"`
	Fill       *fillResult       `json:"fill,omitempty"`
}

// openResult says how opening the streams went.
type openResult struct {
	Streams int     `json:"streams"`
	Ready   int     `json:"ready"`   // streams that sent their ready event
	Seconds float64 `json:"seconds"` // until the last was ready (or the command returned)
}

// latencyResult is the delay from each post's 201 to its arrival at every
// open stream, in milliseconds (an event parsed before its 201 counts 0).
type latencyResult struct {
	Streams      int     `json:"streams"`
	Posts        int     `json:"posts"`       // posts that got their 201
	PostErrors   int     `json:"post_errors"` // posts that did not
	Rate         float64 `json:"rate"`        // posts per second achieved
	Samples      int     `json:"samples"`     // (post, stream) pairs delivered
	Lost         int     `json:"lost"`        // pairs not delivered in time
	P50          float64 `json:"p50_ms"`
	P95          float64 `json:"p95_ms"`
	P99          float64 `json:"p99_ms"`
	Max          float64 `json:"max_ms"`
	SendP50      float64 `json:"send_p50_ms"` // from the post's request instead of its 201
	SendP99      float64 `json:"send_p99_ms"`
	Reconnects   int     `json:"reconnects"`    // stream responses that ended and were reopened
	StreamErrors int     `json:"stream_errors"` // stream requests that failed
	ErrorSample  string  `json:"error_sample,omitempty"`
	// StreamRequests are the stream requests made meanwhile (until every
	// post was delivered); the tail counts are the fetches of tail files
	// by pollers, those answered 304, the events they brought, the files
	// that did not reach back far enough and the fetches that failed.
	StreamRequests int `json:"stream_requests"`
	TailRequests   int `json:"tail_requests"`
	TailUnchanged  int `json:"tail_unchanged"`
	TailEvents     int `json:"tail_events"`
	TailGaps       int `json:"tail_gaps"`
	TailFailed     int `json:"tail_failed"`
	// TailErrorSample is one stream's last failure to read a tail file.
	TailErrorSample string `json:"tail_error_sample,omitempty"`
	// LoadCPUPercent and LoadCPUSeconds are what the load generator
	// itself used meanwhile: it shares the machine with the host.
	LoadCPUPercent float64 `json:"load_cpu_percent"`
	LoadCPUSeconds float64 `json:"load_cpu_seconds"`
}

// fanoutResult is, for each of several single posts, the time from its 201
// until the last open stream had it, in milliseconds.
type fanoutResult struct {
	Streams     int       `json:"streams"`
	Posts       int       `json:"posts"`
	Lost        int       `json:"lost"` // (post, stream) pairs not delivered in time
	Times       []float64 `json:"times_ms"`
	Median      float64   `json:"median_ms"`
	Worst       float64   `json:"worst_ms"`
	ErrorSample string    `json:"error_sample,omitempty"`
}

// step is one run of posters: closed loop (Target 0: every poster posts
// again as soon as it has its answer) or open loop at Target posts/s.
type step struct {
	Target      float64 `json:"target"`
	Seconds     float64 `json:"seconds"`
	OK          int     `json:"ok"`
	Errors      int     `json:"errors"`
	Dropped     int     `json:"dropped"` // open loop: posts due while every poster was busy
	Achieved    float64 `json:"achieved"`
	P50         float64 `json:"p50_ms"` // a post's round trip
	P99         float64 `json:"p99_ms"`
	Pass        bool    `json:"pass"`
	ErrorSample string  `json:"error_sample,omitempty"`
}

// throughputResult is a bounded search for the highest post rate that C
// posters sustain with zero errors.
type throughputResult struct {
	Posters int     `json:"posters"`
	Streams int     `json:"streams"` // streams reading the room meanwhile
	Probe   step    `json:"probe"`
	Steps   []step  `json:"steps"`
	Best    float64 `json:"best"` // the highest passing target, posts/s
}
