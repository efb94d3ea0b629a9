package record

import (
	"strings"
	"testing"
)

func TestParsePairs(t *testing.T) {
	long := strings.Repeat("v", 300)
	got, err := ParsePairs(AppendPairs(nil, "A", "1", "LONG", long, "EMPTY", ""))
	if err != nil || got["A"] != "1" || got["LONG"] != long || len(got) != 3 {
		t.Errorf("got %v, %v", got, err)
	}
	for _, bad := range [][]byte{{5}, {1, 9, 'a'}, {0x80, 0, 0}} {
		if _, err := ParsePairs(bad); err == nil {
			t.Errorf("ParsePairs(%v) succeeded, want an error", bad)
		}
	}
}
