// Package record is the FastCGI 1.0 wire format (the FastCGI
// specification, sections 3 and 8): record types, headers, padding and
// name-value pairs. The responder (package fastcgi) and the tests' client
// both speak through it.
package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Record types (specification, section 8).
const (
	BeginRequest    = 1
	AbortRequest    = 2
	EndRequest      = 3
	Params          = 4
	Stdin           = 5
	Stdout          = 6
	Stderr          = 7
	Data            = 8
	GetValues       = 9
	GetValuesResult = 10
	UnknownType     = 11
)

// Roles, the FCGI_KEEP_CONN flag and protocol statuses of
// FCGI_END_REQUEST.
const (
	RoleResponder = 1
	FlagKeepConn  = 1

	StatusRequestComplete = 0
	StatusCantMultiplex   = 1
	StatusOverloaded      = 2
	StatusUnknownRole     = 3
)

// HeaderLen is the length of a record header; MaxContent the most content
// one record carries.
const (
	HeaderLen  = 8
	MaxContent = 65535
)

// Header is a record's header.
type Header struct {
	Type    byte
	ID      uint16 // the request id; 0 for management records
	Length  int    // content length
	Padding int    // padding length
}

// ReadHeader reads a record header from r.
func ReadHeader(r io.Reader) (Header, error) {
	var b [HeaderLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return Header{}, err
	}
	return ParseHeader(b)
}

// ParseHeader decodes a record header.
func ParseHeader(b [HeaderLen]byte) (Header, error) {
	if b[0] != 1 {
		return Header{}, fmt.Errorf("fastcgi: record version %d, want 1", b[0])
	}
	return Header{
		Type:    b[1],
		ID:      binary.BigEndian.Uint16(b[2:4]),
		Length:  int(binary.BigEndian.Uint16(b[4:6])),
		Padding: int(b[6]),
	}, nil
}

// Bytes encodes the header, of a record of at most MaxContent bytes of
// content and 255 of padding.
func (h Header) Bytes() [HeaderLen]byte {
	return [HeaderLen]byte{1, h.Type, byte(h.ID >> 8), byte(h.ID), byte(h.Length >> 8), byte(h.Length), byte(h.Padding), 0}
}

// Append appends a record (header, content, padding to a multiple of 8)
// of at most MaxContent bytes of content.
func Append(b []byte, typ byte, id uint16, content []byte) []byte {
	pad := -len(content) & 7
	h := Header{Type: typ, ID: id, Length: len(content), Padding: pad}.Bytes()
	b = append(b, h[:]...)
	b = append(b, content...)
	return append(b, make([]byte, pad)...)
}

// AppendStream appends content as records of type typ, as many as it
// takes, then the empty record that ends the stream.
func AppendStream(b []byte, typ byte, id uint16, content []byte) []byte {
	for len(content) > 0 {
		n := min(len(content), MaxContent)
		b = Append(b, typ, id, content[:n])
		content = content[n:]
	}
	return Append(b, typ, id, nil)
}

// AppendPairs appends name-value pairs (kv alternates names and values) in
// FastCGI's length encoding.
func AppendPairs(b []byte, kv ...string) []byte {
	for i := 0; i+1 < len(kv); i += 2 {
		b = appendSize(b, len(kv[i]))
		b = appendSize(b, len(kv[i+1]))
		b = append(b, kv[i]...)
		b = append(b, kv[i+1]...)
	}
	return b
}

func appendSize(b []byte, n int) []byte {
	if n < 128 {
		return append(b, byte(n))
	}
	return binary.BigEndian.AppendUint32(b, uint32(n)|1<<31)
}

// ErrMalformedPairs is returned for name-value pairs that do not parse.
var ErrMalformedPairs = errors.New("fastcgi: malformed name-value pairs")

// ParsePairs decodes name-value pairs, as FCGI_PARAMS and FCGI_GET_VALUES
// carry them.
func ParsePairs(b []byte) (map[string]string, error) {
	params := make(map[string]string)
	for len(b) > 0 {
		nameLen, n := readSize(b)
		if n == 0 {
			return nil, ErrMalformedPairs
		}
		b = b[n:]
		valueLen, n := readSize(b)
		if n == 0 || nameLen+valueLen > len(b)-n {
			return nil, ErrMalformedPairs
		}
		b = b[n:]
		params[string(b[:nameLen])] = string(b[nameLen : nameLen+valueLen])
		b = b[nameLen+valueLen:]
	}
	return params, nil
}

// readSize decodes a pair's length: one byte below 128, else four with
// the high bit set. n is 0 when b is too short.
func readSize(b []byte) (size, n int) {
	switch {
	case len(b) == 0:
		return 0, 0
	case b[0] < 128:
		return int(b[0]), 1
	case len(b) < 4:
		return 0, 0
	}
	return int(binary.BigEndian.Uint32(b) &^ (1 << 31)), 4
}
