package transport

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// OpenStream opens a long-lived stream to the node at addr, of a type its
// endpoint hands to a StreamHandler (Config.Streams), with body as the
// handler's first frame. The stream is a net.Conn both ways; closing it
// ends both directions. ctx bounds only the opening.
func (e *Endpoint) OpenStream(ctx context.Context, addr string, t Type, body []byte) (net.Conn, error) {
	if len(body) > e.cfg.MaxMessage {
		return nil, fmt.Errorf("%w: request of %d bytes", ErrTooLarge, len(body))
	}
	c, err := e.conn(ctx, addr, classControl)
	if err != nil {
		return nil, err
	}
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("transport: open a stream to %s: %w", addr, err)
	}
	sc := &streamConn{s: s, local: c.LocalAddr(), remote: c.RemoteAddr()}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetWriteDeadline(dl)
	}
	if err := WriteFrame(s, t, body); err != nil {
		_ = sc.Close()
		return nil, fmt.Errorf("transport: send to %s: %w", addr, err)
	}
	_ = s.SetWriteDeadline(time.Time{})
	return sc, nil
}

// streamConn is a QUIC stream as a net.Conn.
type streamConn struct {
	s             *quic.Stream
	local, remote net.Addr
	once          sync.Once
}

func (c *streamConn) Read(p []byte) (int, error)  { return c.s.Read(p) }
func (c *streamConn) Write(p []byte) (int, error) { return c.s.Write(p) }

// Close ends both directions: what the peer still sends is discarded.
func (c *streamConn) Close() error {
	c.once.Do(func() {
		c.s.CancelRead(0)
		_ = c.s.Close()
	})
	return nil
}

func (c *streamConn) LocalAddr() net.Addr                { return c.local }
func (c *streamConn) RemoteAddr() net.Addr               { return c.remote }
func (c *streamConn) SetDeadline(t time.Time) error      { return c.s.SetDeadline(t) }
func (c *streamConn) SetReadDeadline(t time.Time) error  { return c.s.SetReadDeadline(t) }
func (c *streamConn) SetWriteDeadline(t time.Time) error { return c.s.SetWriteDeadline(t) }
