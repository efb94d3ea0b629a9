package feed

// Held reports whether the session keeps a page of messages, and the
// capacity of the buffer it keeps, between calls: what a waiting stream
// holds. (An emptied slice may keep its array with a capacity of 0.)
func (s *Session) Held() (pages bool, buf int) { return s.pending != nil || s.first != nil, cap(s.buf) }
