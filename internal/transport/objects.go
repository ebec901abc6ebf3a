package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// Objects are pulled from a holder in ranges of chunks, several streams at
// once. The first request asks only for the object's description (size,
// encoding plan, a CRC-32C per chunk); each later one names a range of
// chunks. Each chunk is checked against its checksum as it arrives, in the
// goroutine that read it; a range cut by a broken stream is asked for
// again from its first missing chunk.

// Reserved message types of object pulls.
const (
	TypePull      Type = 128 // request: pullRequest
	TypePullMeta  Type = 129 // answer: the object's description
	TypePullChunk Type = 130 // answer: one encoded chunk
)

// IDSize is the length of an object ID.
const IDSize = 20

// ObjectSource gives an endpoint the objects it serves.
type ObjectSource interface {
	// Object returns the object's bytes for peer (the node that asks,
	// named by its certificate), valid until release is called, or
	// ok=false when this node does not hold it or does not serve it to
	// that peer.
	Object(peer string, id [IDSize]byte) (data []byte, release func(), ok bool)
}

// Errors of object pulls.
var (
	ErrNoObject = errors.New("transport: the peer does not hold the object")
	ErrCorrupt  = errors.New("transport: the object arrived damaged (checksum mismatch)")
)

// pullRequest asks for chunks [First, Last) of an object; Last == 0 asks
// for the description only.
type pullRequest struct {
	ID          [IDSize]byte
	First, Last uint32
}

func (r pullRequest) encode() []byte {
	b := append([]byte(nil), r.ID[:]...)
	b = binary.BigEndian.AppendUint32(b, r.First)
	return binary.BigEndian.AppendUint32(b, r.Last)
}

func decodePullRequest(b []byte) (pullRequest, error) {
	var r pullRequest
	if len(b) != IDSize+8 {
		return r, fmt.Errorf("transport: pull request of %d bytes", len(b))
	}
	copy(r.ID[:], b)
	r.First, r.Last = binary.BigEndian.Uint32(b[IDSize:]), binary.BigEndian.Uint32(b[IDSize+4:])
	return r, nil
}

// objectMeta describes an object: its size, plan, and the CRC-32C of each
// chunk's raw bytes (Plan.Chunks), which the puller checks each chunk
// against as it arrives.
type objectMeta struct {
	Size int64
	Plan Plan
	Sums []uint32
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// newObjectMeta describes data.
func newObjectMeta(data []byte) objectMeta {
	m := objectMeta{Size: int64(len(data)), Plan: PlanFor(data)}
	bounds := m.Plan.Chunks(m.Size)
	m.Sums = make([]uint32, len(bounds)-1)
	for i := range m.Sums {
		m.Sums[i] = crc32.Checksum(data[bounds[i]:bounds[i+1]], castagnoli)
	}
	return m
}

func (m objectMeta) equal(o objectMeta) bool {
	return m.Size == o.Size && m.Plan == o.Plan && slices.Equal(m.Sums, o.Sums)
}

func (m objectMeta) encode() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 22+4*len(m.Sums)), uint64(m.Size))
	b = append(b, byte(m.Plan.Codec), byte(m.Plan.Width))
	b = binary.BigEndian.AppendUint64(b, uint64(m.Plan.DataOffset))
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Sums)))
	for _, s := range m.Sums {
		b = binary.BigEndian.AppendUint32(b, s)
	}
	return b
}

func decodeObjectMeta(b []byte) (objectMeta, error) {
	var m objectMeta
	if len(b) < 22 {
		return m, fmt.Errorf("transport: object description of %d bytes", len(b))
	}
	m.Size = int64(binary.BigEndian.Uint64(b))
	m.Plan = Plan{Codec: Codec(b[8]), Width: int(b[9]), DataOffset: int64(binary.BigEndian.Uint64(b[10:]))}
	if m.Size < 0 || m.Size > maxObjectSize || m.Plan.DataOffset < 0 || m.Plan.DataOffset > m.Size || m.Plan.Codec > Zstd || m.Plan.Width > 16 {
		return m, fmt.Errorf("transport: bad object description")
	}
	n := binary.BigEndian.Uint32(b[18:])
	if want := len(m.Plan.Chunks(m.Size)) - 1; int64(n) != int64(want) || len(b) != 22+4*want {
		return m, fmt.Errorf("transport: object description with %d checksums for %d chunks", n, want)
	}
	m.Sums = make([]uint32, n)
	for i := range m.Sums {
		m.Sums[i] = binary.BigEndian.Uint32(b[22+4*i:])
	}
	return m, nil
}

// maxObjectSize bounds the objects a description may announce (1 TiB).
const maxObjectSize = 1 << 40

// metaCache remembers objects' descriptions: objects never change, and
// hashing a large one takes a while.
type metaCache struct {
	mu sync.Mutex
	m  map[[IDSize]byte]objectMeta
}

const metaCacheMax = 4096

func (c *metaCache) get(id [IDSize]byte, data []byte) objectMeta {
	c.mu.Lock()
	m, ok := c.m[id]
	c.mu.Unlock()
	if ok && m.Size == int64(len(data)) {
		return m
	}
	m = newObjectMeta(data)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= metaCacheMax {
		c.m = map[[IDSize]byte]objectMeta{}
	}
	c.m[id] = m
	c.mu.Unlock()
	return m
}

// servePull answers a pull request on stream s.
// TransferStats counts an endpoint's object transfers since it started:
// pulls of objects from peers (in) and ranges of objects served to them
// (out). A pull counts once, whatever ranges and retries it took.
type TransferStats struct {
	Pulls, PullsFailed int64 // objects pulled, and pulls that failed
	PulledBytes        int64 // the objects' bytes
	PulledWire         int64 // the bytes of chunks received (after compression)
	Served             int64 // ranges served
	ServedBytes        int64 // the objects' bytes in them
	ServeFailed        int64 // ranges that failed (no such object, a peer gone)
}

type transferCounters struct {
	pulls, pullsFailed, pulledBytes, pulledWire, served, servedBytes, serveFailed atomic.Int64
}

// Transfers returns the endpoint's transfer counters.
func (e *Endpoint) Transfers() TransferStats {
	c := &e.stats
	return TransferStats{Pulls: c.pulls.Load(), PullsFailed: c.pullsFailed.Load(), PulledBytes: c.pulledBytes.Load(), PulledWire: c.pulledWire.Load(),
		Served: c.served.Load(), ServedBytes: c.servedBytes.Load(), ServeFailed: c.serveFailed.Load()}
}

func (e *Endpoint) servePull(s frameWriter, peer string, body []byte) error {
	n, err := e.servePullRange(s, peer, body)
	if err != nil {
		e.stats.serveFailed.Add(1)
		return err
	}
	if n > 0 {
		e.stats.served.Add(1)
		e.stats.servedBytes.Add(n)
	}
	return nil
}

// servePullRange serves one pull request: the object's meta, then the
// chunks asked for; n is the object's bytes in them.
func (e *Endpoint) servePullRange(s frameWriter, peer string, body []byte) (n int64, err error) {
	req, err := decodePullRequest(body)
	if err != nil {
		return 0, err
	}
	if e.cfg.Objects == nil {
		return 0, ErrNoObject
	}
	data, release, ok := e.cfg.Objects.Object(peer, req.ID)
	if !ok {
		return 0, fmt.Errorf("%w %x", ErrNoObject, req.ID[:8])
	}
	defer release()
	meta := e.metas.get(req.ID, data)
	if err := WriteFrame(s, TypePullMeta, meta.encode()); err != nil {
		return 0, err
	}
	bounds := meta.Plan.Chunks(meta.Size)
	nchunks := uint32(len(bounds) - 1)
	if req.Last > nchunks || req.First > req.Last {
		return 0, fmt.Errorf("transport: chunks [%d, %d) of %d", req.First, req.Last, nchunks)
	}
	var buf []byte
	for i := req.First; i < req.Last; i++ {
		lo, hi := bounds[i], bounds[i+1]
		_ = s.SetWriteDeadline(time.Now().Add(DefaultTimeout)) // per chunk: slow links take long per range
		if meta.Plan.Codec == Raw && meta.Plan.Width <= 1 {
			// Raw chunks go out straight from the object's memory.
			var hdr [6 + chunkHeader]byte
			hdr[0], hdr[1] = Version, byte(TypePullChunk)
			binary.BigEndian.PutUint32(hdr[2:], uint32(chunkHeader+hi-lo))
			binary.BigEndian.PutUint32(hdr[6+2:], uint32(hi-lo))
			binary.BigEndian.PutUint32(hdr[6+6:], uint32(hi-lo))
			if _, err := s.Write(hdr[:]); err != nil {
				return n, err
			}
			if _, err := s.Write(data[lo:hi]); err != nil {
				return n, err
			}
			n += hi - lo
			continue
		}
		buf = meta.Plan.EncodeChunk(buf[:0], data[lo:hi], lo)
		if err := WriteFrame(s, TypePullChunk, buf); err != nil {
			return n, err
		}
		n += hi - lo
	}
	return n, nil
}

type frameWriter interface {
	Write(p []byte) (int, error)
	SetWriteDeadline(t time.Time) error
}

// PullOptions tune Pull.
type PullOptions struct {
	// Streams is how many ranges are pulled at once on each connection (0: 2).
	Streams int
	// RangeChunks is how many chunks one request asks for (0: 8).
	RangeChunks int
	// Retries bounds how often a failed range is asked for again (0: 5).
	Retries int
	// Lanes is how many connections the ranges are spread over (0: one,
	// or on a long round trip one per 16 MiB, up to 16; see lanesFor).
	Lanes int
}

// lanesFor picks how many connections a pull of size bytes uses when the
// caller did not say. On a link with a long round trip, a loss-based
// congestion controller takes each lost packet for congestion, so one
// connection moves little through random loss (about 0.3 MB/s at 100 ms
// and 1%); parallel connections each get their own window, as parallel
// TCP streams do for bulk transfers. Short round trips keep one.
func lanesFor(size int64, rtt time.Duration) int {
	if rtt < 20*time.Millisecond {
		return 1
	}
	return int(min(max(size/(16<<20), 1), 16))
}

// PullStats says how a pull went.
type PullStats struct {
	Size    int64 // the object's size
	Wire    int64 // bytes of chunks received (after compression)
	Retries int   // ranges asked for again after a failure
	Lanes   int   // connections the ranges were spread over
	Plan    Plan
}

// Pull fetches an object from the node at addr. alloc is called once with
// the object's size and returns where to put it (for example a range of
// the arena). The object is checked against its hash before Pull returns.
func (e *Endpoint) Pull(ctx context.Context, addr string, id [IDSize]byte, alloc func(size int64) ([]byte, error), o PullOptions) (PullStats, error) {
	st, err := e.pull(ctx, addr, id, alloc, o)
	e.stats.pulledWire.Add(st.Wire)
	if err != nil {
		e.stats.pullsFailed.Add(1)
		return st, err
	}
	e.stats.pulls.Add(1)
	e.stats.pulledBytes.Add(st.Size)
	return st, nil
}

func (e *Endpoint) pull(ctx context.Context, addr string, id [IDSize]byte, alloc func(size int64) ([]byte, error), o PullOptions) (PullStats, error) {
	if o.Streams <= 0 {
		o.Streams = 2
	}
	if o.RangeChunks <= 0 {
		o.RangeChunks = 8
	}
	if o.Retries <= 0 {
		o.Retries = 5
	}
	var st PullStats
	frames, err := e.open(ctx, addr, classBulk, TypePull, pullRequest{ID: id}.encode(), maxChunkFrame)
	if err != nil {
		return st, err
	}
	meta, err := readMeta(frames)
	frames.close()
	if err != nil {
		return st, err
	}
	st.Size, st.Plan = meta.Size, meta.Plan
	lanes := []*quic.Conn{frames.conn}
	if o.Lanes <= 0 {
		o.Lanes = lanesFor(meta.Size, frames.conn.ConnectionStats().SmoothedRTT)
	}
	for range o.Lanes - 1 {
		c, err := e.dial(ctx, addr)
		if err != nil {
			break // fewer lanes
		}
		defer c.CloseWithError(0, "pull done")
		lanes = append(lanes, c)
	}
	st.Lanes = len(lanes)
	dst, err := alloc(meta.Size)
	if err != nil {
		return st, err
	}
	if int64(len(dst)) != meta.Size {
		return st, fmt.Errorf("transport: alloc gave %d bytes for an object of %d", len(dst), meta.Size)
	}
	bounds := meta.Plan.Chunks(meta.Size)
	n := uint32(len(bounds) - 1)
	type span struct{ first, last uint32 }
	work := make(chan span, n+1)
	pending := sync.WaitGroup{}
	for first := uint32(0); first < n; first += uint32(o.RangeChunks) {
		pending.Add(1)
		work <- span{first, min(first+uint32(o.RangeChunks), n)}
	}
	var (
		mu       sync.Mutex
		firstErr error
		retries  = map[uint32]int{}
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	go func() { pending.Wait(); close(work) }()
	var workers sync.WaitGroup
	for i := range min(o.Streams*len(lanes), int(n)) {
		lane := lanes[i%len(lanes)]
		workers.Add(1)
		go func() {
			defer workers.Done()
			for sp := range work {
				mu.Lock()
				failed := firstErr != nil
				mu.Unlock()
				if failed || ctx.Err() != nil {
					pending.Done() // the pull has failed: drain the rest
					continue
				}
				got, wire, err := e.pullRange(ctx, addr, lane, id, meta, bounds, sp.first, sp.last, dst)
				mu.Lock()
				st.Wire += wire
				stop := firstErr != nil
				mu.Unlock()
				if err != nil && !stop && ctx.Err() == nil && !errors.Is(err, ErrBadChunk) && !errors.Is(err, ErrRemote) && !errors.Is(err, ErrCorrupt) {
					mu.Lock()
					retries[sp.first]++
					tries := retries[sp.first]
					st.Retries++
					mu.Unlock()
					if tries <= o.Retries {
						// Resume from the first chunk that did not arrive.
						time.Sleep(time.Duration(tries*tries) * 20 * time.Millisecond)
						work <- span{got, sp.last}
						continue
					}
				}
				if err != nil {
					fail(err)
				}
				pending.Done()
			}
		}()
	}
	workers.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return st, fmt.Errorf("transport: pull %x from %s: %w", id[:8], addr, firstErr)
	}
	return st, nil
}

func readMeta(f *frames) (objectMeta, error) {
	t, body, err := f.next()
	if err != nil {
		return objectMeta{}, err
	}
	if t == TypeError {
		return objectMeta{}, fmt.Errorf("%w: %s", ErrRemote, body)
	}
	if t != TypePullMeta {
		return objectMeta{}, fmt.Errorf("transport: expected an object description, got message type %d", t)
	}
	return decodeObjectMeta(body)
}

// pullRange fetches chunks [first, last) into dst and returns the index of
// the first chunk it did not get and the bytes received.
func (e *Endpoint) pullRange(ctx context.Context, addr string, lane *quic.Conn, id [IDSize]byte, meta objectMeta, bounds []int64, first, last uint32, dst []byte) (uint32, int64, error) {
	if lane.Context().Err() != nil {
		// Broken: the shared bulk connection, dialled again if need be.
		c, err := e.conn(ctx, addr, classBulk)
		if err != nil {
			return first, 0, err
		}
		lane = c
	}
	f, err := e.openOn(ctx, lane, addr, TypePull, pullRequest{ID: id, First: first, Last: last}.encode(), maxChunkFrame)
	if err != nil {
		return first, 0, err
	}
	defer f.close()
	again, err := readMeta(f)
	if err != nil {
		return first, 0, err
	}
	if !again.equal(meta) {
		return first, 0, fmt.Errorf("%w: the holder's description of the object changed", ErrCorrupt)
	}
	var wire int64
	var scratch []byte
	for i := first; i < last; i++ {
		n, err := f.readChunk(dst[bounds[i]:bounds[i+1]], &scratch)
		wire += n
		if err != nil {
			return i, wire, err
		}
		if crc32.Checksum(dst[bounds[i]:bounds[i+1]], castagnoli) != meta.Sums[i] {
			return i, wire, fmt.Errorf("%w: chunk %d of object %x", ErrCorrupt, i, id[:8])
		}
	}
	return last, wire, nil
}

// readChunk reads one chunk frame into dst: a raw chunk straight into it,
// an encoded one through scratch. It returns the bytes received.
func (f *frames) readChunk(dst []byte, scratch *[]byte) (int64, error) {
	var hdr [6]byte
	if _, err := io.ReadFull(f.s, hdr[:]); err != nil {
		return 0, err
	}
	if hdr[0] != Version {
		return 0, fmt.Errorf("%w %d", ErrVersion, hdr[0])
	}
	t, n := Type(hdr[1]), binary.BigEndian.Uint32(hdr[2:])
	if uint64(n) > uint64(f.max) {
		return 0, fmt.Errorf("%w: chunk frame of %d bytes", ErrTooLarge, n)
	}
	if t != TypePullChunk {
		body := make([]byte, n)
		if _, err := io.ReadFull(f.s, body); err != nil {
			return 0, err
		}
		if t == TypeError {
			return 0, fmt.Errorf("%w: %s", ErrRemote, body)
		}
		return 0, fmt.Errorf("transport: expected a chunk, got message type %d", t)
	}
	if n < chunkHeader {
		return 0, fmt.Errorf("%w: frame of %d bytes", ErrBadChunk, n)
	}
	var ch [chunkHeader]byte
	if _, err := io.ReadFull(f.s, ch[:]); err != nil {
		return 0, err
	}
	if Codec(ch[0]) == Raw && ch[1] == 0 && n == chunkHeader+uint32(len(dst)) &&
		binary.BigEndian.Uint32(ch[2:]) == uint32(len(dst)) && binary.BigEndian.Uint32(ch[6:]) == uint32(len(dst)) {
		_, err := io.ReadFull(f.s, dst)
		return int64(n), err
	}
	if cap(*scratch) < int(n) {
		*scratch = make([]byte, n)
	}
	buf := (*scratch)[:n]
	copy(buf, ch[:])
	if _, err := io.ReadFull(f.s, buf[chunkHeader:]); err != nil {
		return int64(n), err
	}
	return int64(n), DecodeChunk(dst, buf)
}

// maxChunkFrame bounds an encoded chunk frame: a chunk that did not shrink
// is sent raw, so its header plus ChunkSize.
const maxChunkFrame = ChunkSize + chunkHeader + 64

// frames reads the answer frames of one request stream.
type frames struct {
	s      *quic.Stream
	conn   *quic.Conn
	max    int
	cancel func() bool
}

func (f *frames) next() (Type, []byte, error) { return ReadFrame(f.s, f.max) }

func (f *frames) close() {
	f.cancel()
	f.s.CancelRead(0)
	_ = f.s.Close()
}

// open sends a request on a new stream and returns its answer frames, each
// at most max bytes. The context's deadline, if any, bounds the stream, and
// its end cancels the stream.
func (e *Endpoint) open(ctx context.Context, addr string, class connClass, t Type, body []byte, max int) (*frames, error) {
	c, err := e.conn(ctx, addr, class)
	if err != nil {
		return nil, err
	}
	return e.openOn(ctx, c, addr, t, body, max)
}

// openOn is open on connection c.
func (e *Endpoint) openOn(ctx context.Context, c *quic.Conn, addr string, t Type, body []byte, max int) (*frames, error) {
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("transport: open a stream to %s: %w", addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { s.CancelRead(2); s.CancelWrite(2) })
	f := &frames{s: s, conn: c, max: max, cancel: stop}
	if werr := WriteFrame(s, t, body); werr != nil {
		defer f.close()
		// The peer may have refused the request (too large) and said why.
		if rt, rb, err := f.next(); err == nil && rt == TypeError {
			return nil, fmt.Errorf("%w: %s", ErrRemote, rb)
		}
		return nil, fmt.Errorf("transport: send to %s: %w", addr, werr)
	}
	_ = s.Close() // our side is done: the peer reads to the end
	return f, nil
}
