// Package transport carries requests between agents over QUIC (quic-go;
// this package is its only importer). A node calls each peer on two
// connections, authenticated both ways with the cluster's certificates:
// one for requests and their answers (control), one for object pulls
// (bulk), so that bulk traffic never delays control. Every request opens
// its own stream, so a slow request never holds up another. A request and
// its answer are one frame each:
//
//	version (1 byte) | type (1 byte) | length (4 bytes, big endian) | body
//
// Bodies are at most MaxMessage bytes, and each call has a deadline.
package transport

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// ALPN is the protocol name agents negotiate in TLS.
const ALPN = "fabric/1"

// Version is the frame format's version; a frame of another is refused.
const Version = 1

// Limits.
const (
	// MaxMessage bounds a request or answer body by default.
	MaxMessage = 64 << 20
	// DefaultTimeout bounds a call whose context has no deadline.
	DefaultTimeout = 30 * time.Second
)

// Type is a message type. Types below 128 are requests; TypeError answers
// a request whose handler failed.
type Type byte

// TypeError carries a handler's error text.
const TypeError Type = 255

// Errors of the package.
var (
	ErrClosed       = errors.New("transport: endpoint closed")
	ErrTooLarge     = errors.New("transport: message too large")
	ErrVersion      = errors.New("transport: unsupported frame version")
	ErrRemote       = errors.New("transport: the peer's handler failed")
	ErrNoHandler    = errors.New("transport: no handler for the message type")
	errShortMessage = errors.New("transport: truncated frame")
)

// Handler answers one request from the node named peer (its certificate's
// common name: the node ID). An error is sent back as TypeError.
type Handler func(ctx context.Context, peer string, t Type, body []byte) (Type, []byte, error)

// Config configures an endpoint.
type Config struct {
	// Addr is the UDP address to listen on, host:port (port 0 picks one).
	Addr string
	// PacketConn, when set, is used instead of listening on Addr: a
	// simulated network in tests (quic-go's simnet), or a socket the
	// caller set up. The caller closes it after Close.
	PacketConn net.PacketConn
	// TLS is the node's mutual-TLS configuration (secrets.Cluster.TLSConfig);
	// its NextProtos is set to ALPN.
	TLS *tls.Config
	// Handler answers requests (nil: every request fails with ErrNoHandler).
	Handler Handler
	// MaxMessage bounds bodies (0: MaxMessage).
	MaxMessage int
	// MaxStreams bounds the requests a peer may have open at once (0: 256).
	MaxStreams int64
	// IdleTimeout closes a connection without traffic (0: 60 s; keep-alives
	// every third of it).
	IdleTimeout time.Duration
	// Objects are the objects this node serves to Pull (nil: none).
	Objects ObjectSource
	// Streams take the streams that a peer opened with OpenStream, by the
	// type it gave: a long-lived, two-way byte stream (a raft connection, a
	// followed log). The handler owns the stream and closes it; it runs on
	// a goroutine of its own.
	Streams map[Type]StreamHandler
}

// StreamHandler takes a stream a peer opened with OpenStream: peer is its
// node ID, body the first frame's body, and conn the rest of the stream
// both ways.
type StreamHandler func(peer string, body []byte, conn net.Conn)

// Endpoint is a node's QUIC endpoint: it serves requests and makes calls.
type Endpoint struct {
	cfg    Config
	ln     *quic.Listener
	tr     *quic.Transport
	udp    net.PacketConn // closed by Close when the endpoint opened it
	quic   *quic.Config
	tls    *tls.Config
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	metas  metaCache
	stats  transferCounters
	idle   chan streamRequest // to server goroutines waiting for a stream
	mu     sync.Mutex
	conns  map[connKey]*quic.Conn  // outgoing
	served map[*quic.Conn]struct{} // incoming
	dials  map[connKey]*dial
	closed bool
}

// connClass separates a peer's traffic: requests and answers (control)
// never share a connection with object pulls (bulk), so a pull that fills
// a connection's congestion and flow-control windows does not delay them.
type connClass uint8

const (
	classControl connClass = iota
	classBulk
)

// connKey names an outgoing connection.
type connKey struct {
	addr  string
	class connClass
}

type dial struct {
	done chan struct{}
	conn *quic.Conn
	err  error
}

// Listen starts an endpoint.
func Listen(cfg Config) (*Endpoint, error) {
	if cfg.TLS == nil {
		return nil, errors.New("transport: a TLS configuration is required")
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = MaxMessage
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = 256
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	tlsConf := cfg.TLS.Clone()
	tlsConf.NextProtos = []string{ALPN}
	qc := &quic.Config{
		MaxIncomingStreams:         cfg.MaxStreams,
		MaxIncomingUniStreams:      -1,
		MaxIdleTimeout:             cfg.IdleTimeout,
		KeepAlivePeriod:            cfg.IdleTimeout / 3,
		HandshakeIdleTimeout:       10 * time.Second,
		MaxStreamReceiveWindow:     16 << 20,
		MaxConnectionReceiveWindow: 64 << 20,
	}
	pc, own := cfg.PacketConn, net.PacketConn(nil)
	if pc == nil {
		udp, err := net.ListenPacket("udp", cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("transport: listen on %s: %w", cfg.Addr, err)
		}
		pc, own = udp, udp
	}
	tr := &quic.Transport{Conn: pc}
	ln, err := tr.Listen(tlsConf, qc)
	if err != nil {
		if own != nil {
			_ = own.Close()
		}
		return nil, fmt.Errorf("transport: listen on %s: %w", pc.LocalAddr(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Endpoint{cfg: cfg, ln: ln, tr: tr, udp: own, quic: qc, tls: tlsConf, ctx: ctx, cancel: cancel,
		conns: map[connKey]*quic.Conn{}, dials: map[connKey]*dial{}, served: map[*quic.Conn]struct{}{},
		idle: make(chan streamRequest)}
	e.wg.Add(1)
	go e.accept()
	return e, nil
}

// Addr is the endpoint's UDP address.
func (e *Endpoint) Addr() string { return e.ln.Addr().String() }

func (e *Endpoint) accept() {
	defer e.wg.Done()
	for {
		c, err := e.ln.Accept(e.ctx)
		if err != nil {
			return
		}
		e.mu.Lock()
		e.served[c] = struct{}{}
		e.mu.Unlock()
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.serveConn(c)
			e.mu.Lock()
			delete(e.served, c)
			e.mu.Unlock()
		}()
	}
}

// peerName is the node ID in the peer's certificate.
func peerName(c *quic.Conn) string {
	if certs := c.ConnectionState().TLS.PeerCertificates; len(certs) > 0 {
		return certs[0].Subject.CommonName
	}
	return ""
}

// serveConn answers the requests on one connection, each on its own stream.
func (e *Endpoint) serveConn(c *quic.Conn) {
	peer := peerName(c)
	for {
		s, err := c.AcceptStream(e.ctx)
		if err != nil {
			return
		}
		req := streamRequest{ctx: c.Context(), peer: peer, remote: c.RemoteAddr(), s: s}
		select {
		case e.idle <- req: // a server goroutine waiting for work takes it
		default:
			e.wg.Add(1)
			go e.streamServer(req)
		}
	}
}

// streamRequest is a stream for a server goroutine.
type streamRequest struct {
	ctx    context.Context
	peer   string
	remote net.Addr
	s      *quic.Stream
}

// streamIdle is how long a server goroutine waits for its next stream.
const streamIdle = 2 * time.Second

// streamServer serves a stream, then the next ones handed to it while it
// waits: a busy endpoint reuses its goroutines (and their grown stacks)
// instead of starting one per request.
func (e *Endpoint) streamServer(req streamRequest) {
	defer e.wg.Done()
	idle := time.NewTimer(streamIdle)
	defer idle.Stop()
	for {
		e.serveStream(req.ctx, req.peer, req.remote, req.s)
		idle.Reset(streamIdle)
		select {
		case req = <-e.idle:
		case <-idle.C:
			return
		case <-e.ctx.Done():
			return
		}
	}
}

func (e *Endpoint) serveStream(ctx context.Context, peer string, remote net.Addr, s *quic.Stream) {
	handedOff := false
	defer func() {
		if handedOff {
			return
		}
		// A request is one frame. The stream counts against the peer's
		// limit of open streams until its receiving side is done too:
		// reading the end of the stream does that, but the end may come in
		// a packet after the frame, and nothing reads it. Cancelling the
		// read side (once the frame is in) completes it either way, so
		// streams are never leaked.
		s.CancelRead(0)
		_ = s.Close()
	}()
	_ = s.SetReadDeadline(time.Now().Add(DefaultTimeout))
	t, body, err := ReadFrame(s, e.cfg.MaxMessage)
	if err != nil {
		s.CancelRead(1)
		_ = WriteFrame(s, TypeError, []byte(err.Error()))
		return
	}
	if h := e.cfg.Streams[t]; h != nil {
		// The stream is the handler's now: none of the ends below apply.
		handedOff = true
		_ = s.SetReadDeadline(time.Time{})
		c := &streamConn{s: s, local: e.ln.Addr(), remote: remote}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			stop := context.AfterFunc(e.ctx, func() { _ = c.Close() })
			defer stop()
			h(peer, body, c)
		}()
		return
	}
	if t == TypePull {
		_ = s.SetWriteDeadline(time.Now().Add(DefaultTimeout))
		if err := e.servePull(s, peer, body); err != nil {
			_ = WriteFrame(s, TypeError, []byte(err.Error()))
		}
		return
	}
	var rt Type
	var rb []byte
	if e.cfg.Handler == nil {
		err = fmt.Errorf("%w %d", ErrNoHandler, t)
	} else {
		// The stream's context ends when the caller gives up on the call
		// (it stops reading), so that the handler can stop its work.
		rt, rb, err = e.safeHandle(s.Context(), peer, t, body)
	}
	if err == nil && len(rb) > e.cfg.MaxMessage {
		err = fmt.Errorf("%w: answer of %d bytes", ErrTooLarge, len(rb))
	}
	if err != nil {
		rt, rb = TypeError, []byte(err.Error())
	}
	_ = s.SetWriteDeadline(time.Now().Add(DefaultTimeout))
	_ = WriteFrame(s, rt, rb)
}

// safeHandle runs the handler, turning a panic into an error so that a bad
// request never stops the agent.
func (e *Endpoint) safeHandle(ctx context.Context, peer string, t Type, body []byte) (rt Type, rb []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("transport: handler panicked on message type %d: %v", t, r)
		}
	}()
	return e.cfg.Handler(ctx, peer, t, body)
}

// dial opens a new connection to addr, not shared (conn shares one).
func (e *Endpoint) dial(ctx context.Context, addr string) (*quic.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	udp, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	return e.tr.Dial(dctx, udp, e.tls, e.quic)
}

// conn returns the connection of a class to addr, dialling it once for
// all callers.
func (e *Endpoint) conn(ctx context.Context, addr string, class connClass) (*quic.Conn, error) {
	key := connKey{addr, class}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	if c := e.conns[key]; c != nil && c.Context().Err() == nil {
		e.mu.Unlock()
		return c, nil
	}
	d := e.dials[key]
	if d == nil {
		d = &dial{done: make(chan struct{})}
		e.dials[key] = d
		go func() {
			d.conn, d.err = e.dial(e.ctx, addr)
			e.mu.Lock()
			delete(e.dials, key)
			if d.err == nil {
				if e.closed {
					_ = d.conn.CloseWithError(0, "closed")
					d.conn, d.err = nil, ErrClosed
				} else {
					e.conns[key] = d.conn
				}
			}
			e.mu.Unlock()
			close(d.done)
		}()
	}
	e.mu.Unlock()
	select {
	case <-d.done:
		if d.err != nil {
			return nil, fmt.Errorf("transport: connect to %s: %w", addr, d.err)
		}
		return d.conn, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Call sends a request to the node at addr and returns its answer. The
// context's deadline bounds the whole call (DefaultTimeout when it has
// none). An answer of TypeError comes back as an error wrapping ErrRemote.
func (e *Endpoint) Call(ctx context.Context, addr string, t Type, body []byte) (Type, []byte, error) {
	if len(body) > e.cfg.MaxMessage {
		return 0, nil, fmt.Errorf("%w: request of %d bytes", ErrTooLarge, len(body))
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	f, err := e.open(ctx, addr, classControl, t, body, e.cfg.MaxMessage)
	if err != nil {
		return 0, nil, err
	}
	defer f.close()
	rt, rb, err := f.next()
	if err != nil {
		dl, _ := ctx.Deadline()
		switch {
		case ctx.Err() != nil:
			err = ctx.Err()
		case !time.Now().Before(dl): // the stream's deadline fired just before the context's
			err = context.DeadlineExceeded
		}
		return 0, nil, fmt.Errorf("transport: answer from %s: %w", addr, err)
	}
	if rt == TypeError {
		return 0, nil, fmt.Errorf("%w: %s", ErrRemote, rb)
	}
	return rt, rb, nil
}

// ClosePeer closes every connection with the peer whose certificate
// names it, both ways (a node just revoked: its certificate is refused
// from then on, and its open connections end now).
func (e *Endpoint) ClosePeer(peer string) {
	e.mu.Lock()
	var conns []*quic.Conn
	for k, c := range e.conns {
		if peerName(c) == peer {
			conns = append(conns, c)
			delete(e.conns, k)
		}
	}
	for c := range e.served {
		if peerName(c) == peer {
			conns = append(conns, c)
		}
	}
	e.mu.Unlock()
	for _, c := range conns {
		_ = c.CloseWithError(0, "peer refused")
	}
}

// Close stops the endpoint: its listener, its connections and its calls.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	conns := make([]*quic.Conn, 0, len(e.conns)+len(e.served))
	for _, c := range e.conns {
		conns = append(conns, c)
	}
	for c := range e.served {
		conns = append(conns, c)
	}
	e.conns = map[connKey]*quic.Conn{}
	e.mu.Unlock()
	e.cancel()
	for _, c := range conns {
		_ = c.CloseWithError(0, "endpoint closed")
	}
	err := e.ln.Close()
	e.wg.Wait()
	if cerr := e.tr.Close(); err == nil {
		err = cerr
	}
	if e.udp != nil { // quic.Transport leaves a socket it was given open
		if cerr := e.udp.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// WriteFrame writes one frame.
func WriteFrame(w io.Writer, t Type, body []byte) error {
	var hdr [6]byte
	hdr[0], hdr[1] = Version, byte(t)
	binary.BigEndian.PutUint32(hdr[2:], uint32(len(body)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	if len(body) == 0 {
		// No write of nothing: a peer that read the header has the whole
		// frame, may have answered and stopped its reading side already,
		// and a QUIC stream fails even an empty write after that (a call
		// without a body failed now and then: "canceled by remote with
		// error code 0").
		return nil
	}
	_, err := w.Write(body)
	return err
}

// ReadFrame reads one frame whose body is at most max bytes.
func ReadFrame(r io.Reader, max int) (Type, []byte, error) {
	var hdr [6]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = errShortMessage
		}
		return 0, nil, err
	}
	if hdr[0] != Version {
		return 0, nil, fmt.Errorf("%w %d (this node speaks %d)", ErrVersion, hdr[0], Version)
	}
	n := binary.BigEndian.Uint32(hdr[2:])
	if uint64(n) > uint64(max) {
		return 0, nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, n, max)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, errShortMessage
	}
	return Type(hdr[1]), body, nil
}
