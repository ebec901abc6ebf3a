package control

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is raft's network over the agents' QUIC streams: the agent
// hands incoming raft streams to Server.Accept, and Dial opens one.
type streamLayer struct {
	accept chan net.Conn
	closed chan struct{}
	once   sync.Once
	dial   func(ctx context.Context, addr string) (net.Conn, error)
	addr   net.Addr
}

func (l *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-l.closed:
		return nil, ErrClosed
	}
}

func (l *streamLayer) Close() error {
	l.close()
	return nil
}

func (l *streamLayer) close() { l.once.Do(func() { close(l.closed) }) }

func (l *streamLayer) Addr() net.Addr { return l.addr }

func (l *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.dial(ctx, string(address))
}

// resolver looks a server's address up by node ID at each dial.
type resolver func(nodeID string) (string, error)

func (r resolver) ServerAddr(id raft.ServerID) (raft.ServerAddress, error) {
	a, err := r(string(id))
	return raft.ServerAddress(a), err
}

// addr is an address as net.Addr.
type addr string

func (a addr) Network() string { return "quic" }
func (a addr) String() string  { return string(a) }
