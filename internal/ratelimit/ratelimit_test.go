package ratelimit

import (
	"testing"
	"time"
)

func TestTake(t *testing.T) {
	r := Rate{N: 2, Per: 10 * time.Second} // 0.2 tokens a second
	b, ok, _ := r.Take(Bucket{}, false, 100)
	if !ok || b.Tokens != 1 {
		t.Fatalf("first take: %+v %v, want ok with 1 left", b, ok)
	}
	b, ok, _ = r.Take(b, true, 100)
	if !ok || b.Tokens != 0 {
		t.Fatalf("second take: %+v %v, want ok with 0 left", b, ok)
	}
	_, ok, wait := r.Take(b, true, 102.5)
	if ok || wait < 2400*time.Millisecond || wait > 2600*time.Millisecond {
		t.Fatalf("empty bucket after 2.5 s: ok %v, wait %v; want a wait of 2.5 s", ok, wait)
	}
	b, ok, _ = r.Take(b, true, 105)
	if !ok || b.Tokens > 0.0001 {
		t.Errorf("after 5 s (one token back): %+v %v, want ok with none left", b, ok)
	}
	if b, ok, _ := r.Take(Bucket{Tokens: 0, Updated: 0}, true, 1000); !ok || b.Tokens != 1 {
		t.Errorf("after a long rest: %+v %v, want capped at capacity, one taken", b, ok)
	}
}
