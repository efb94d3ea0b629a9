package web

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"

	"cgichat/internal/chat"
)

// statusOf maps every error code to its HTTP status, in this one place.
var statusOf = map[chat.Code]int{
	chat.EInvalid:     http.StatusBadRequest,
	chat.ETooLarge:    http.StatusRequestEntityTooLarge,
	chat.EUnsupported: http.StatusUnsupportedMediaType,
	chat.EMethod:      http.StatusMethodNotAllowed,
	chat.EForbidden:   http.StatusForbidden,
	chat.ENotFound:    http.StatusNotFound,
	chat.EConflict:    http.StatusConflict,
	chat.EMismatch:    http.StatusUnprocessableEntity,
	chat.ETooMany:     http.StatusTooManyRequests,
	chat.EConfig:      http.StatusInternalServerError,
	chat.EInternal:    http.StatusInternalServerError,
}

// fail answers a request with err's status and a JSON body
// {"error": "a sentence"}. Server-side errors are logged with their cause;
// the client sees only the sentence.
func fail(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code := chat.ErrorCode(err)
	status, ok := statusOf[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if status >= 500 {
		log.Error("request failed", "method", r.Method, "uri", requestURI(r), "err", err)
	}
	var ce *chat.Error
	if errors.As(err, &ce) && ce.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(ce.RetryAfter.Seconds()))))
	}
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{chat.ErrorMessage(err)})
}

// requestURI returns the path and query r asked for, for logs (never the
// body). Go's CGI and FastCGI requests leave r.RequestURI empty (only a
// net/http server sets it), so it comes from the URL, which every mode
// fills from REQUEST_URI or SCRIPT_NAME, PATH_INFO and QUERY_STRING.
func requestURI(r *http.Request) string {
	if r.URL == nil {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// writeJSON sends v as the whole response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"The response could not be encoded."}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	secure(h)
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// methodNotAllowed answers 405 naming the allowed methods.
func methodNotAllowed(w http.ResponseWriter, r *http.Request, log *slog.Logger, allow string) {
	w.Header().Set("Allow", allow)
	fail(w, r, log, chat.Errorf(chat.EMethod, "This address accepts only %s requests.", allow))
}

// secure sets the headers that keep a response from being sniffed as
// another type, framed by another site, or leaking the page's address.
func secure(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
}
