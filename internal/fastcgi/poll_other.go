//go:build !linux

package fastcgi

import "errors"

// poller is Linux's alone (epoll): elsewhere every connection has a
// reader goroutine of its own.
type poller struct{}

func newPoller() (*poller, error)             { return nil, errors.ErrUnsupported }
func (p *poller) arm(int, uint32, bool) error { return errors.ErrUnsupported }
func (p *poller) run(func(uint32))            {}
func (p *poller) close()                      {}

// canTryWrite says that tryWrite sends nothing: writes that cannot wait
// are Linux's alone here.
const canTryWrite = false

// tryWrite sends nothing.
func (c *conn) tryWrite([]byte) (int, error) { return 0, nil }
