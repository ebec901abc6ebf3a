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
	// nil once the node has applied it. It is called from one goroutine per
	// node at a time.
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
	cfg     Config
	session uint64
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup

	mu    sync.Mutex
	peers map[string]*peer
	stats Stats

	recvMu sync.Mutex
	recv   map[string]*receiver
}

// peer is the queue of one node.
type peer struct {
	node    string
	queue   []peerwire.Envelope
	bytes   int
	seq     uint64 // of the next batch
	running bool   // a goroutine sends the queue
	cancel  context.CancelFunc
	gone    uint64 // Drop count: a sender that sees it change discards its batch
	cut     map[string]int64
	failing time.Time // first failure of the current run of failures
	unreach bool
}

// receiver dedups the batches of one sending node.
type receiver struct {
	mu      sync.Mutex
	session uint64
	seq     uint64 // next expected
	started bool
}

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
	var b [8]byte
	_, _ = rand.Read(b[:])
	ctx, stop := context.WithCancel(context.Background())
	return &Link{cfg: cfg, session: binary.LittleEndian.Uint64(b[:]), ctx: ctx, stop: stop,
		peers: map[string]*peer{}, recv: map[string]*receiver{}}
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
	if !p.running {
		p.running = true
		l.wg.Add(1)
		go l.run(p)
	}
}

// Drop discards what is queued for node, and the batch on its way: the
// node is gone. The messages are counted and reported.
func (l *Link) Drop(node string) {
	l.mu.Lock()
	p := l.peers[node]
	if p == nil {
		l.mu.Unlock()
		return
	}
	n := len(p.queue)
	p.queue, p.bytes, p.cut = nil, 0, nil
	p.gone++
	if p.cancel != nil {
		p.cancel()
	}
	l.stats.Dropped += uint64(n)
	l.mu.Unlock()
	if n > 0 && l.cfg.Log != nil {
		l.cfg.Log(fmt.Sprintf("peerlink: %d messages to node %s discarded: it is gone", n, node))
	}
}

// run sends p's queue until it is empty.
func (l *Link) run(p *peer) {
	defer l.wg.Done()
	backoff := 10 * time.Millisecond
	for {
		l.mu.Lock()
		if len(p.queue) == 0 || l.ctx.Err() != nil {
			p.running = false
			l.mu.Unlock()
			return
		}
		take, size := 0, 0
		for take < len(p.queue) && (take == 0 || size+len(p.queue[take].Body) <= l.cfg.MaxBatch) {
			size += len(p.queue[take].Body)
			take++
		}
		msgs := p.queue[:take:take]
		gone := p.gone
		seq := p.seq
		ctx, cancel := context.WithTimeout(l.ctx, l.cfg.Timeout)
		p.cancel = cancel
		l.mu.Unlock()

		body, err := peerwire.EncodeBatch(peerwire.Batch{Session: l.session, Seq: seq, Msgs: msgs})
		if err == nil {
			err = l.cfg.Send(ctx, p.node, body)
		}
		cancel()

		l.mu.Lock()
		p.cancel = nil
		switch {
		case p.gone != gone: // dropped meanwhile: the batch is counted there
			p.seq++
			l.mu.Unlock()
			backoff = 10 * time.Millisecond
			continue
		case errors.Is(err, ErrRefused):
			clear(p.queue[:take])
			p.queue = p.queue[take:]
			p.bytes -= size
			p.seq++
			l.stats.Refused += uint64(take)
			l.mu.Unlock()
			if l.cfg.Log != nil {
				l.cfg.Log(fmt.Sprintf("peerlink: node %s refused %d messages: %v", p.node, take, err))
			}
			continue
		case err == nil:
			clear(p.queue[:take])
			p.queue = p.queue[take:]
			p.bytes -= size
			p.seq++
			l.stats.Sent += uint64(take)
			l.stats.Batches++
			p.failing = time.Time{}
			back := p.unreach
			p.unreach = false
			l.mu.Unlock()
			if back && l.cfg.Reachable != nil {
				l.cfg.Reachable(p.node)
			}
			backoff = 10 * time.Millisecond
			continue
		}
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
		case <-l.ctx.Done():
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Receive decodes a batch from node from and applies its messages with
// apply, once: a batch sent again (its acknowledgement was lost) is not
// applied twice. Batches of one sender are applied one at a time, in
// order. A nil error acknowledges the batch.
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
		l.recv[from] = r
	}
	l.recvMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case !r.started || r.session != b.Session: // a new sender, or one that restarted
		r.started, r.session = true, b.Session
	case b.Seq < r.seq:
		l.mu.Lock()
		l.stats.Repeats++
		l.mu.Unlock()
		return nil // applied before; its acknowledgement was lost
	}
	r.seq = b.Seq + 1
	apply(msgs)
	l.mu.Lock()
	l.stats.Received += uint64(len(msgs))
	l.mu.Unlock()
	return nil
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
		return len(p.queue)
	}
	return 0
}

// Close stops sending and waits for the link's goroutines; what is still
// queued is discarded.
func (l *Link) Close() {
	l.mu.Lock()
	l.stop()
	for _, p := range l.peers {
		if p.cancel != nil {
			p.cancel()
		}
	}
	l.mu.Unlock()
	l.wg.Wait()
}
