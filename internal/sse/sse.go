// Package sse encodes Server-Sent Events frames. It only appends bytes: the
// caller decides when to write and flush, so a frame built once can be sent
// to many clients.
package sse

import (
	"strconv"
	"strings"
)

// AppendEvent appends one event: its id (when id > 0), its type and its
// data, ended by the blank line that dispatches it. Every line break in
// data (CR, LF or CRLF, all of which end an SSE line) starts a new data
// line, so no content can end the frame early or forge a field.
func AppendEvent(b []byte, id int64, event string, data string) []byte {
	if id > 0 {
		b = append(b, "id: "...)
		b = strconv.AppendInt(b, id, 10)
		b = append(b, '\n')
	}
	if event != "" {
		b = appendField(b, "event", oneLine(event))
	}
	for {
		i := strings.IndexAny(data, "\r\n")
		if i < 0 {
			break
		}
		b = appendField(b, "data", data[:i])
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	b = appendField(b, "data", data)
	return append(b, '\n')
}

// AppendRetry appends a retry field telling the browser how long to wait
// before reconnecting, followed by a blank line (which dispatches nothing).
func AppendRetry(b []byte, ms int64) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, ms, 10)
	return append(b, '\n', '\n')
}

// AppendComment appends a comment line, which clients ignore; it keeps
// proxies from timing out and reveals a departed client when it fails.
func AppendComment(b []byte, text string) []byte {
	b = append(b, ':', ' ')
	b = append(b, oneLine(text)...)
	return append(b, '\n')
}

func appendField(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, ':', ' ')
	b = append(b, value...)
	return append(b, '\n')
}

// oneLine cuts s at its first line break; used for fields that must be a
// single line.
func oneLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}
