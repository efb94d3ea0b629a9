package sse_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"cgichat/internal/sse"
)

func TestAppendEvent(t *testing.T) {
	tests := []struct {
		name  string
		id    int64
		event string
		data  string
		want  string
	}{
		{"Plain", 7, "message", `{"a":1}`, "id: 7\nevent: message\ndata: {\"a\":1}\n\n"},
		{"NoID", 0, "ready", "x", "event: ready\ndata: x\n\n"},
		{"NoType", 3, "", "x", "id: 3\ndata: x\n\n"},
		{"EmptyData", 1, "", "", "id: 1\ndata: \n\n"},
		{"LF splits data", 1, "", "a\nb", "id: 1\ndata: a\ndata: b\n\n"},
		{"CRLF splits once", 1, "", "a\r\nb", "id: 1\ndata: a\ndata: b\n\n"},
		{"CR splits", 1, "", "a\rb", "id: 1\ndata: a\ndata: b\n\n"},
		{"Forged frame stays data", 1, "message", "x\n\nevent: evil\ndata: y",
			"id: 1\nevent: message\ndata: x\ndata: \ndata: event: evil\ndata: data: y\n\n"},
		{"Event name cut at line break", 0, "a\nb", "x", "event: a\ndata: x\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(sse.AppendEvent(nil, tt.id, tt.event, tt.data)); got != tt.want {
				t.Errorf("AppendEvent = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRetryAndComment(t *testing.T) {
	if got, want := string(sse.AppendRetry(nil, 1500)), "retry: 1500\n\n"; got != want {
		t.Errorf("AppendRetry = %q, want %q", got, want)
	}
	if got, want := string(sse.AppendComment(nil, "ping\ndata: x")), ": ping\n"; got != want {
		t.Errorf("AppendComment = %q, want %q", got, want)
	}
}

func TestReader(t *testing.T) {
	stream := "retry: 250\n\n: hello\nid: 4\nevent: message\ndata: a\ndata: b\n\n" +
		"data: no type\r\n\r\nevent: ready\ndata: {}\n\nid: 9\ndata: cut off"
	r := sse.NewReader(strings.NewReader(stream))
	want := []sse.Event{
		{Comment: "hello", Retry: 250},
		{ID: "4", Type: "message", Data: "a\nb", Retry: 250},
		{ID: "4", Type: "message", Data: "no type", Retry: 250},
		{ID: "4", Type: "ready", Data: "{}", Retry: 250},
	}
	for i, w := range want {
		got, err := r.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if got != w {
			t.Errorf("event %d = %+v, want %+v", i, got, w)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("after a cut-off event: err = %v, want io.ErrUnexpectedEOF", err)
	}
}

// FuzzEventRoundTrip checks that any data survives encoding and parsing as
// exactly one event, with its line breaks made LF: no input forges a frame.
func FuzzEventRoundTrip(f *testing.F) {
	for _, s := range []string{"", "x", "a\nb", "\n\nevent: x\ndata: y", "a\r\nb\rc", "\r", ":", "id: 5"} {
		f.Add(int64(1), s)
	}
	f.Fuzz(func(t *testing.T, id int64, data string) {
		if id <= 0 {
			id = 1
		}
		var b []byte
		b = sse.AppendEvent(b, id, "message", data)
		b = sse.AppendEvent(b, id+1, "message", "next")
		r := sse.NewReader(bytes.NewReader(b))
		want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(data)
		got, err := r.Next()
		if err != nil {
			t.Fatalf("first event: %v", err)
		}
		if got.Type != "message" || got.Data != want {
			t.Fatalf("first event = %+v, want type message and data %q", got, want)
		}
		got, err = r.Next()
		if err != nil || got.Data != "next" {
			t.Fatalf("second event = %+v, %v; want data %q", got, err, "next")
		}
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("after two events: err = %v, want io.EOF", err)
		}
	})
}
