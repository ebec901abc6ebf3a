// Package wire holds the messages between an agent and its worker processes
// and the framing that carries them over a Unix socket.
//
// A frame is a 4-byte big-endian length, then one byte of message type,
// then an 8-byte big-endian lane, then the message encoded as CBOR. A lane
// names one instance of the worker process's module (the agent's worker);
// lane 0 is the process itself. Frames are limited to MaxFrame bytes; large
// object payloads travel through the shared-memory arena instead.
package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"

	"github.com/fxamacker/cbor/v2"
	"golang.org/x/sys/unix"
)

// MaxFrame bounds one frame: a peer announcing more is broken or hostile.
const MaxFrame = 1 << 30

// Errors returned by the codec.
var (
	ErrFrameTooLarge = errors.New("wire: frame too large")
	ErrUnknownType   = errors.New("wire: unknown message type")
)

// Type identifies a message.
type Type byte

// Message types. Requests from a worker carry a Seq that the agent's Reply echoes.
const (
	TypeReady Type = iota + 1
	TypeExec
	TypeDone
	TypeOutput
	TypeReply
	TypeSubmit
	TypePut
	TypeCreate
	TypeGet
	TypeUnpin
	TypeWait
	TypeCancel
	TypeRelease
	TypeActorLookup
	TypeActorKill
	TypeGroupCreate
	TypeGroupWait
	TypeGroupRemove
	TypeDrop
	TypeStop
	TypeOpen
	TypeClose
	TypeClosed
	TypeLease
	TypeLeaseEnd
	TypeLeaseOver
	TypeContext
	TypeCluster
	TypeGroups
)

// Lane names one instance in a worker process: the agent's worker ID. The
// frames of lane ProcessLane are about the process itself.
type Lane uint64

// ProcessLane is the lane of the process's own frames (its first Ready).
const ProcessLane Lane = 0

// headerLen is the bytes of a frame before its body: length, type, lane.
const headerLen = 13

var typeNames = map[Type]string{
	TypeReady: "ready", TypeExec: "exec", TypeDone: "done", TypeOutput: "output", TypeReply: "reply",
	TypeSubmit: "submit", TypePut: "put", TypeCreate: "create", TypeGet: "get", TypeUnpin: "unpin",
	TypeWait: "wait", TypeCancel: "cancel", TypeRelease: "release", TypeActorLookup: "actor_lookup",
	TypeActorKill: "actor_kill", TypeGroupCreate: "group_create", TypeGroupWait: "group_wait",
	TypeGroupRemove: "group_remove", TypeDrop: "drop", TypeStop: "stop",
	TypeOpen: "open", TypeClose: "close", TypeClosed: "closed",
	TypeLease: "lease", TypeLeaseEnd: "lease_end", TypeLeaseOver: "lease_over",
	TypeContext: "context", TypeCluster: "cluster", TypeGroups: "groups",
}

// String names the type.
func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type(%d)", byte(t))
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{MaxArrayElements: 1 << 24, MaxMapPairs: 1 << 20, MaxNestedLevels: 32}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Marshal encodes v as CBOR.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// Unmarshal decodes CBOR into v.
func Unmarshal(b []byte, v any) error { return decMode.Unmarshal(b, v) }

// Conn reads and writes frames. Writes are safe from many goroutines; reads
// belong to one goroutine. Send writes at once; Queue appends to a buffer
// that the next Send or Flush writes, so one-way messages (task submissions,
// output) cost one system call per batch instead of one each.
//
// Two locks: bm guards the buffer and is only ever held briefly, so Append
// never waits for the socket; wm orders the writes and is held while one
// blocks.
type Conn struct {
	r   *bufio.Reader
	bm  sync.Mutex // guards buf
	wm  sync.Mutex // one writer at a time
	w   io.Writer
	c   io.Closer
	raw syscall.RawConn // for TryFlush; nil when the stream has no descriptor
	buf []byte          // queued frames
}

// NewConn wraps a stream.
func NewConn(rwc io.ReadWriteCloser) *Conn {
	c := &Conn{r: bufio.NewReaderSize(rwc, 64<<10), w: rwc, c: rwc}
	if sc, ok := rwc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	return c
}

// queueMax is the most bytes Queue holds before it writes them itself.
const queueMax = 256 << 10

func frame(lane Lane, t Type, msg any) ([]byte, []byte, error) {
	body, err := encMode.Marshal(msg)
	if err != nil {
		return nil, nil, fmt.Errorf("wire: encode %s: %w", t, err)
	}
	if len(body)+headerLen-4 > MaxFrame {
		return nil, nil, fmt.Errorf("%w: %s of %d bytes", ErrFrameTooLarge, t, len(body))
	}
	hdr := make([]byte, headerLen)
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(body)+headerLen-4))
	hdr[4] = byte(t)
	binary.BigEndian.PutUint64(hdr[5:], uint64(lane))
	return hdr, body, nil
}

// Send encodes one message for a lane and writes it, after anything
// queued.
func (c *Conn) Send(lane Lane, t Type, msg any) error {
	hdr, body, err := frame(lane, t, msg)
	if err != nil {
		return err
	}
	c.wm.Lock()
	defer c.wm.Unlock()
	if len(body) < 64<<10 {
		c.bm.Lock()
		c.buf = append(append(c.buf, hdr...), body...)
		c.bm.Unlock()
		return c.flushLocked()
	}
	if err := c.flushLocked(); err != nil {
		return err
	}
	if _, err = c.w.Write(hdr); err != nil {
		return err
	}
	_, err = c.w.Write(body)
	return err
}

// Queue encodes one message and appends it to the write buffer; it is
// written by the next Send or Flush, or at once when the buffer is full.
func (c *Conn) Queue(lane Lane, t Type, msg any) error {
	n, err := c.Append(lane, t, msg)
	if err != nil || n < queueMax {
		return err
	}
	return c.Flush()
}

// Append encodes one message and appends it to the write buffer without
// ever writing, so it never blocks, even while another goroutine's write
// waits for a full socket; it returns the bytes now buffered. A writer
// goroutine calls Flush. The agent uses it so that no lock is held while
// a slow worker's socket is full.
func (c *Conn) Append(lane Lane, t Type, msg any) (int, error) {
	hdr, body, err := frame(lane, t, msg)
	if err != nil {
		return 0, err
	}
	c.bm.Lock()
	defer c.bm.Unlock()
	c.buf = append(append(c.buf, hdr...), body...)
	return len(c.buf), nil
}

// Flush writes what Queue or Append buffered.
func (c *Conn) Flush() error {
	c.wm.Lock()
	defer c.wm.Unlock()
	return c.flushLocked()
}

// TryFlush writes what is buffered if it can without waiting: when no
// other goroutine is writing and the socket takes it all at once. It
// reports whether the buffer is empty afterwards; if not, what is left
// waits for Flush (a write error, too, is left for Flush to report). It
// never blocks, so a caller holding other locks may use it.
func (c *Conn) TryFlush() bool {
	if c.raw == nil || !c.wm.TryLock() {
		return false
	}
	defer c.wm.Unlock()
	c.bm.Lock()
	defer c.bm.Unlock()
	for len(c.buf) > 0 {
		var n int
		var werr error
		err := c.raw.Write(func(fd uintptr) bool {
			n, werr = unix.Write(int(fd), c.buf)
			return true // one attempt: never wait for the socket
		})
		if n > 0 {
			c.buf = c.buf[:copy(c.buf, c.buf[n:])]
		}
		if err != nil || werr != nil || n <= 0 {
			return len(c.buf) == 0
		}
	}
	if cap(c.buf) > 4*queueMax {
		c.buf = nil
	}
	return true
}

// Queued reports whether messages wait in the buffer.
func (c *Conn) Queued() bool {
	c.bm.Lock()
	defer c.bm.Unlock()
	return len(c.buf) > 0
}

// flushLocked writes the buffer; the caller holds wm. The buffer is taken
// out under bm and written without it, so that Append goes on meanwhile;
// what was appended during the write goes next.
func (c *Conn) flushLocked() error {
	for {
		c.bm.Lock()
		out := c.buf
		c.buf = nil
		c.bm.Unlock()
		if len(out) == 0 {
			return nil
		}
		if _, err := c.w.Write(out); err != nil {
			return err
		}
		if cap(out) <= 4*queueMax {
			c.bm.Lock()
			if c.buf == nil {
				c.buf = out[:0] // reuse it
			}
			c.bm.Unlock()
		}
	}
}

// Recv reads one frame and returns its lane, type and body (to Decode).
func (c *Conn) Recv() (Lane, Type, []byte, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return 0, 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < headerLen-4 || n > MaxFrame {
		return 0, 0, nil, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	t := Type(hdr[4])
	if _, ok := typeNames[t]; !ok {
		return 0, 0, nil, fmt.Errorf("%w: %d", ErrUnknownType, hdr[4])
	}
	lane := Lane(binary.BigEndian.Uint64(hdr[5:]))
	body := make([]byte, n-(headerLen-4))
	if _, err := io.ReadFull(c.r, body); err != nil {
		return 0, 0, nil, err
	}
	return lane, t, body, nil
}

// FrameReady reports whether a whole frame is already buffered, so that
// Recv would return without waiting for the peer.
func (c *Conn) FrameReady() bool {
	if c.r.Buffered() < headerLen {
		return false
	}
	hdr, err := c.r.Peek(4)
	if err != nil {
		return false
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	return n < headerLen-4 || n > MaxFrame || uint64(c.r.Buffered()) >= 4+uint64(n) // a bad length: let Recv report it
}

// Close closes the stream.
func (c *Conn) Close() error { return c.c.Close() }

// RawMessage is an undecoded CBOR item.
type RawMessage = cbor.RawMessage
