// Package peerlink carries an agent's messages to the other agents of its
// cluster: to each peer in the order they were sent, in batches, each batch
// acknowledged by the peer and sent again, as long as the peer is alive,
// until it is. The receiving side applies each batch once, in order, even
// when a batch arrives twice.
//
// Send never blocks: it queues. One goroutine per peer with messages to
// send takes everything queued (up to a batch's size), sends it and waits
// for the acknowledgement. While a batch is on its way the next one
// fills, so a busy peer gets large batches and an idle one gets each
// message at once. Failed sends are retried with backoff and counted;
// messages are discarded only when the peer is gone (Drop), and then
// counted and reported. Output, the one kind that may be lost, is dropped
// (with a notice in the job's next output) when a peer's queue is too
// long.
package peerlink

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/wasmfabric/fabric/internal/peerwire"
)

// Config configures a link.
type Config struct {
	// Send delivers one encoded batch (peerwire.Batch) to node and returns
	// nil once the node has taken it (the receiver acknowledges a batch
	// when it takes it, before applying it; see Receive). It is called
	// from up to Window goroutines per node at a time.
	Send func(ctx context.Context, node string, batch []byte) error
	// MaxBatch bounds the encoded messages of one batch (0: 1 MiB); a
	// larger message goes alone.
	MaxBatch int
	// MaxOutputQueue bounds the bytes queued for one node past which
	// output messages are dropped (0: 8 MiB).
	MaxOutputQueue int
	// Timeout bounds one attempt to send a batch (0: 30 s).
	Timeout time.Duration
	// Unreachable, when set, is called once when sends to a node have
	// failed for UnreachableAfter (0: 10 s) in a row, and Reachable when
	// one succeeds again. Neither may call the link.
	Unreachable, Reachable func(node string)
	UnreachableAfter       time.Duration
	// Log receives a line for each batch of messages discarded because
	// their peer is gone (nil: discarded).
	Log func(string)
}

// Stats are a link's counters.
type Stats struct {
	Sent      uint64 // messages acknowledged by their peer
	Batches   uint64 // batches acknowledged
	Retries   uint64 // sends of a batch that failed and were tried again
	Dropped   uint64 // messages discarded because their peer was gone
	Refused   uint64 // messages discarded because their peer refused their batch
	OutputCut uint64 // output bytes dropped because a peer's queue was full
	Received  uint64 // messages applied from peers
	Repeats   uint64 // batches received again and not applied twice
}

// Link is one agent's side of the links to all its peers.
type Link struct {
	cfg  Config
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu    sync.Mutex
	peers map[string]*peer
	stats Stats

	recvMu sync.Mutex
	recv   map[string]*receiver
}

// Window is how many batches may be on their way to one peer at once. The
// receiver applies them in order, whatever order they arrive in.
const Window = 4

// peer is the queue of one node.
type peer struct {
	node  string
	queue []peerwire.Envelope
	bytes int
	// session numbers this run of batches; Drop starts another, from
	// sequence number 0.
	session uint64
	seq     uint64 // of the next batch
	senders int    // goroutines sending batches (at most Window)
	flying  int    // messages in batches on their way
	ctx     context.Context
	cancel  context.CancelFunc // ends the sends of this session
	cut     map[string]int64
	failing time.Time // first failure of the current run of failures
	unreach bool
}

// receiver orders and dedups the batches of one sending node, and applies
// them on a goroutine of its own, in order.
type receiver struct {
	mu      sync.Mutex
	cond    *sync.Cond
	session uint64
	next    uint64 // the next batch to take
	started bool
	// pending are batches taken and not yet applied; applying is set
	// while the receiver's goroutine runs.
	pending  []pendingBatch
	applying bool
}

type pendingBatch struct {
	msgs  []peerwire.Message
	apply func([]peerwire.Message)
}

// maxPending bounds the batches of one sender taken and not yet applied:
// past it, Receive waits, and so does the sender.
const maxPending = 64

// Errors of the package.
var (
	// ErrClosed is returned by Receive after Close.
	ErrClosed = errors.New("peerlink: closed")
	// ErrRefused, wrapped in an error Send returns, means the peer read
	// the batch and refused it: sending it again cannot help, so it is
	// discarded, counted and reported.
	ErrRefused = errors.New("peerlink: the peer refused the batch")
)

// New returns a link.
func New(cfg Config) *Link {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1 << 20
	}
	if cfg.MaxOutputQueue <= 0 {
		cfg.MaxOutputQueue = 8 << 20
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.UnreachableAfter <= 0 {
		cfg.UnreachableAfter = 10 * time.Second
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Link{cfg: cfg, ctx: ctx, stop: stop, peers: map[string]*peer{}, recv: map[string]*receiver{}}
}

// newSession starts p's next run of batches. Caller holds l.mu.
func (l *Link) newSession(p *peer) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	p.session, p.seq = binary.LittleEndian.Uint64(b[:]), 0
	p.ctx, p.cancel = context.WithCancel(l.ctx)
}

// Send queues a message for node. It never blocks. An output message is
// dropped when node's queue is longer than MaxOutputQueue.
func (l *Link) Send(node string, m peerwire.Message) {
	e, err := peerwire.Encode(m)
	if err != nil {
		if l.cfg.Log != nil {
			l.cfg.Log(fmt.Sprintf("peerlink: %v", err))
		}
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx.Err() != nil {
		return
	}
	p := l.peers[node]
	if p == nil {
		p = &peer{node: node}
		l.newSession(p)
		l.peers[node] = p
	}
	if out, ok := m.(*peerwire.Output); ok {
		if p.bytes > l.cfg.MaxOutputQueue {
			if p.cut == nil {
				p.cut = map[string]int64{}
			}
			p.cut[out.Job] += int64(len(out.Data))
			l.stats.OutputCut += uint64(len(out.Data))
			return
		}
		if n := p.cut[out.Job]; n > 0 {
			delete(p.cut, out.Job)
			notice := *out
			notice.Data = fmt.Appendf(nil, "fabric: %d bytes of output were dropped on their way to this node\n", n)
			if ne, err := peerwire.Encode(&notice); err == nil {
				p.queue = append(p.queue, ne)
				p.bytes += len(ne.Body)
			}
		}
	}
	p.queue = append(p.queue, e)
	p.bytes += len(e.Body)
	// A sender more while the queue grows behind the ones on their way:
	// small messages wait for the next batch (they batch better), a long
	// queue goes out on several at once (long round trips).
	if p.senders == 0 || (p.senders < Window && (len(p.queue) >= 64 || p.bytes >= 256<<10)) {
		p.senders++
		l.wg.Add(1)
		go l.run(p)
	}
}

// Drop discards what is queued for node, and the batches on their way:
// the node is gone. The messages are counted and reported.
func (l *Link) Drop(node string) {
	l.mu.Lock()
	p := l.peers[node]
	if p == nil {
		l.mu.Unlock()
		return
	}
	n := len(p.queue) + p.flying // a batch on its way may or may not have arrived
	p.queue, p.bytes, p.cut = nil, 0, nil
	p.cancel()
	l.newSession(p)
	l.stats.Dropped += uint64(n)
	l.mu.Unlock()
	if n > 0 && l.cfg.Log != nil {
		l.cfg.Log(fmt.Sprintf("peerlink: %d messages to node %s discarded: it is gone", n, node))
	}
}

// run sends batches of p's queue until it is empty; up to Window of them
// run at once, each sending its own batch until the peer takes it.
func (l *Link) run(p *peer) {
	defer l.wg.Done()
	for {
		l.mu.Lock()
		if len(p.queue) == 0 || l.ctx.Err() != nil {
			p.senders--
			l.mu.Unlock()
			return
		}
		take, size := 0, 0
		for take < len(p.queue) && (take == 0 || size+len(p.queue[take].Body) <= l.cfg.MaxBatch) {
			size += len(p.queue[take].Body)
			take++
		}
		msgs := p.queue[:take:take]
		p.queue = p.queue[take:]
		p.bytes -= size
		p.flying += take
		session, seq, ctx := p.session, p.seq, p.ctx
		p.seq++
		l.mu.Unlock()

		body, err := peerwire.EncodeBatch(peerwire.Batch{Session: session, Seq: seq, Msgs: msgs})
		if err == nil {
			err = l.sendBatch(ctx, p, body)
		}

		l.mu.Lock()
		p.flying -= take
		switch {
		case l.ctx.Err() != nil: // closed
		case ctx.Err() != nil: // dropped (counted by Drop): the node is gone
		case errors.Is(err, ErrRefused):
			l.stats.Refused += uint64(take)
		case err != nil: // it could not be encoded
			l.stats.Refused += uint64(take)
			if l.cfg.Log != nil {
				l.cfg.Log(fmt.Sprintf("peerlink: %d messages to node %s discarded: %v", take, p.node, err))
			}
		default:
			l.stats.Sent += uint64(take)
			l.stats.Batches++
			p.failing = time.Time{}
		}
		back := err == nil && p.unreach
		if back {
			p.unreach = false
		}
		l.mu.Unlock()
		if errors.Is(err, ErrRefused) && l.cfg.Log != nil {
			l.cfg.Log(fmt.Sprintf("peerlink: node %s refused %d messages: %v", p.node, take, err))
		}
		if back && l.cfg.Reachable != nil {
			l.cfg.Reachable(p.node)
		}
	}
}

// sendBatch sends one batch until p takes it, refuses it, or its session
// ends (Drop or Close), retrying with backoff.
func (l *Link) sendBatch(ctx context.Context, p *peer, body []byte) error {
	backoff := 10 * time.Millisecond
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
		err := l.cfg.Send(actx, p.node, body)
		cancel()
		if err == nil || errors.Is(err, ErrRefused) || ctx.Err() != nil {
			return err
		}
		l.mu.Lock()
		l.stats.Retries++
		if p.failing.IsZero() {
			p.failing = time.Now()
		}
		report := !p.unreach && time.Since(p.failing) >= l.cfg.UnreachableAfter
		if report {
			p.unreach = true
		}
		l.mu.Unlock()
		if report && l.cfg.Unreachable != nil {
			l.cfg.Unreachable(p.node)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Receive decodes a batch from node from and takes it: its messages are
// applied with apply once, in the order the sender sent its batches, on a
// goroutine of the link's for that sender, so that the sender's round trip
// does not wait for them. A batch that arrives before the ones sent ahead
// of it waits for them; a batch sent again (its acknowledgement was lost)
// is not taken twice. A nil error acknowledges the batch.
func (l *Link) Receive(from string, body []byte, apply func([]peerwire.Message)) error {
	b, msgs, err := peerwire.DecodeBatch(body)
	if err != nil {
		return err
	}
	l.recvMu.Lock()
	if l.ctx.Err() != nil {
		l.recvMu.Unlock()
		return ErrClosed
	}
	r := l.recv[from]
	if r == nil {
		r = &receiver{}
		r.cond = sync.NewCond(&r.mu)
		l.recv[from] = r
	}
	l.recvMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started || r.session != b.Session {
		// A new run of batches (a new sender, one that restarted, or one
		// whose earlier run was dropped) starts at 0; one that does not is
		// a run this receiver joined late (it restarted).
		r.started, r.session, r.next = true, b.Session, b.Seq
		if b.Seq < Window {
			r.next = 0
		}
		r.cond.Broadcast()
	}
	deadline := time.Now().Add(l.cfg.Timeout)
	for r.session == b.Session && (b.Seq > r.next || (b.Seq == r.next && len(r.pending) >= maxPending)) {
		if time.Now().After(deadline) || l.ctx.Err() != nil {
			return fmt.Errorf("peerlink: batch %d from %s waited too long (for batch %d, or for room)", b.Seq, from, r.next)
		}
		waitCond(r.cond, 100*time.Millisecond)
	}
	if r.session != b.Session || b.Seq < r.next {
		l.mu.Lock()
		l.stats.Repeats++
		l.mu.Unlock()
		return nil // taken before (its acknowledgement was lost), or superseded
	}
	r.next = b.Seq + 1
	r.pending = append(r.pending, pendingBatch{msgs: msgs, apply: apply})
	r.cond.Broadcast()
	if !r.applying {
		r.applying = true
		l.wg.Add(1)
		go l.applyLoop(r)
	}
	return nil
}

// applyLinger is how long a sender's apply goroutine waits for its next
// batch before it ends: a busy sender's batches are applied by one
// goroutine, not one per burst.
const applyLinger = 100 * time.Millisecond

// applyLoop applies a sender's batches in order until none has come for
// applyLinger.
func (l *Link) applyLoop(r *receiver) {
	defer l.wg.Done()
	r.mu.Lock()
	for {
		for len(r.pending) > 0 {
			b := r.pending[0]
			r.pending[0] = pendingBatch{}
			r.pending = r.pending[1:]
			r.cond.Broadcast() // room for a waiting batch
			r.mu.Unlock()
			b.apply(b.msgs)
			l.mu.Lock()
			l.stats.Received += uint64(len(b.msgs))
			l.mu.Unlock()
			r.mu.Lock()
		}
		idle := time.Now().Add(applyLinger)
		for len(r.pending) == 0 && l.ctx.Err() == nil && time.Now().Before(idle) {
			waitCond(r.cond, applyLinger)
		}
		if len(r.pending) == 0 {
			break
		}
	}
	r.applying = false
	r.mu.Unlock()
}

// waitCond waits on c for at most d.
func waitCond(c *sync.Cond, d time.Duration) {
	t := time.AfterFunc(d, func() {
		c.L.Lock()
		c.Broadcast()
		c.L.Unlock()
	})
	c.Wait()
	t.Stop()
}

// Forget drops what the link remembers of node's batches (the node left).
func (l *Link) Forget(node string) {
	l.recvMu.Lock()
	delete(l.recv, node)
	l.recvMu.Unlock()
}

// Stats returns the link's counters.
func (l *Link) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// Queued returns the messages queued for node and not yet acknowledged.
func (l *Link) Queued(node string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.peers[node]; p != nil {
		return len(p.queue) + p.flying
	}
	return 0
}

// Close stops sending and waits for the link's goroutines; what is still
// queued is discarded.
func (l *Link) Close() {
	l.mu.Lock()
	l.stop()
	l.mu.Unlock()
	l.recvMu.Lock()
	for _, r := range l.recv {
		r.mu.Lock()
		r.cond.Broadcast()
		r.mu.Unlock()
	}
	l.recvMu.Unlock()
	l.wg.Wait()
}
