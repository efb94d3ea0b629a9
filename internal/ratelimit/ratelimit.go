// Package ratelimit is the arithmetic of cgichat's rate limits: token
// buckets, whose state the store keeps so that they hold across processes.
package ratelimit

import (
	"fmt"
	"math"
	"time"
)

// Rate is a token bucket: N posts at once, refilled at N per Per. The zero
// Rate is no limit.
type Rate struct {
	N   int
	Per time.Duration
}

// Off reports whether the rate limit is disabled.
func (r Rate) Off() bool { return r.N == 0 }

// String returns the rate as CHAT_RATE_LIMIT spells it.
func (r Rate) String() string {
	if r.Off() {
		return "off"
	}
	return fmt.Sprintf("%d/%s", r.N, r.Per)
}

// Bucket is a token bucket's state: tokens left at Updated (Unix seconds).
type Bucket struct {
	Tokens  float64
	Updated float64
}

// Take takes one token from b at now (Unix seconds) under r; a bucket not
// found starts full. It returns the new state, or, when the bucket is
// empty, false and how long until a token is back.
func (r Rate) Take(b Bucket, found bool, now float64) (Bucket, bool, time.Duration) {
	capacity := float64(r.N)
	perSecond := capacity / r.Per.Seconds()
	tokens := capacity
	if found {
		tokens = math.Min(capacity, b.Tokens+math.Max(0, now-b.Updated)*perSecond)
	}
	if tokens < 1 {
		wait := time.Duration((1 - tokens) / perSecond * float64(time.Second))
		return b, false, wait
	}
	return Bucket{Tokens: tokens - 1, Updated: now}, true, 0
}
