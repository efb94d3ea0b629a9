package feed

// Held returns the capacity of the message pages and of the buffer the
// session keeps between calls: what a waiting stream holds.
func (s *Session) Held() (pages, buf int) { return cap(s.pending) + cap(s.first), cap(s.buf) }
