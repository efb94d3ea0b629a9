// Package chat holds the domain of cgichat: what a message is, which rooms,
// nicks and texts are acceptable, and the error type every layer speaks.
package chat

import (
	"errors"
	"fmt"
	"time"
)

// Message is one chat line as stored and as sent to clients. Its JSON form
// is the body of a 201 from post and the data of every stream event.
type Message struct {
	ID   int64  `db:"id" json:"id"`
	Room string `db:"room" json:"room"`
	Nick string `db:"nick" json:"nick"`
	Text string `db:"text" json:"text"`
	// Time is RFC 3339 in UTC with milliseconds, as stored in created_at.
	Time string `db:"created_at" json:"time"`

	// Kind is KindMessage, or KindDelete for the tombstone a deletion
	// leaves; Target is then the deleted message's id.
	Kind   string `db:"kind" json:"-"`
	Target int64  `db:"target" json:"-"`
}

// Kinds of rows in the messages table.
const (
	KindMessage = "message"
	KindDelete  = "delete"
)

// TimeFormat is the layout of Message.Time: RFC 3339, UTC, milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z"

// Code classifies an Error; the HTTP layer maps each code to one status.
type Code string

// The error codes. Their HTTP statuses live in one table in package web.
const (
	EInvalid     Code = "invalid"     // a field or parameter is wrong
	ETooLarge    Code = "too_large"   // the request body is over the limit
	EUnsupported Code = "unsupported" // the body's content type is not accepted
	EMethod      Code = "method"      // the HTTP method is not allowed
	EForbidden   Code = "forbidden"   // a ban, or a post from another site
	ENotFound    Code = "not_found"   // the message an action names is not there
	EConflict    Code = "conflict"    // the nick belongs to someone else
	EMismatch    Code = "mismatch"    // an Idempotency-Key sent before with another request
	ETooMany     Code = "too_many"    // over a rate limit or the stream cap
	EConfig      Code = "config"      // the server's configuration is wrong
	EInternal    Code = "internal"    // anything else; details go to the log only
)

// Error is an error with a code and a message written for the person who
// sent the request. Err, when set, carries the cause for the log.
type Error struct {
	Code    Code
	Message string
	Err     error
	// RetryAfter, for ETooMany, is when trying again can succeed.
	RetryAfter time.Duration
}

// Error returns the message, followed by the cause when there is one.
func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, or
// EInternal when there is none.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the user-facing message of the first *Error in err's
// chain, or a fixed sentence for internal errors so that no detail leaks.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code != EInternal {
		return e.Message
	}
	return "Something went wrong on the server. Please try again in a moment."
}

// Duration writes d for people: "10 seconds", "1 minute", "90 seconds",
// "2 hours".
func Duration(d time.Duration) string {
	n, unit := int64(d/time.Second), "second"
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		n, unit = int64(d/time.Hour), "hour"
	case d >= time.Minute && d%time.Minute == 0:
		n, unit = int64(d/time.Minute), "minute"
	}
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
