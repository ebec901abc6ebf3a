package peerlink

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/peerwire"
)

// net connects links in memory: a batch sent to a node is received by
// that node's link. fail, when set, decides whether an attempt fails
// before or after the receiver applied the batch.
type net struct {
	mu    sync.Mutex
	links map[string]*Link
	got   map[string][]string // node -> "from:job" of applied messages, in order
	fail  func(from, to string, attempt int) (before, after bool)
	tries map[string]int
	block chan struct{} // when set, sends wait for it
}

func newNet() *net {
	return &net{links: map[string]*Link{}, got: map[string][]string{}, tries: map[string]int{}}
}

func (n *net) add(node string, cfg Config) *Link {
	cfg.Send = func(ctx context.Context, to string, body []byte) error {
		n.mu.Lock()
		dst := n.links[to]
		n.tries[node+">"+to]++
		attempt := n.tries[node+">"+to]
		fail, block := n.fail, n.block
		n.mu.Unlock()
		if block != nil {
			select {
			case <-block:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		var before, after bool
		if fail != nil {
			before, after = fail(node, to, attempt)
		}
		if before || dst == nil {
			return errors.New("lost on the way")
		}
		err := dst.Receive(node, body, func(msgs []peerwire.Message) {
			n.mu.Lock()
			defer n.mu.Unlock()
			for _, m := range msgs {
				line := node + ":" + m.JobID()
				if o, ok := m.(*peerwire.Output); ok {
					line += ":" + string(o.Data)
				}
				n.got[to] = append(n.got[to], line)
			}
		})
		if after {
			return errors.New("acknowledgement lost")
		}
		return err
	}
	l := New(cfg)
	n.mu.Lock()
	n.links[node] = l
	n.mu.Unlock()
	return l
}

func (n *net) received(node string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.got[node]...)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func end(i int) *peerwire.EndJob { return &peerwire.EndJob{Job: fmt.Sprint(i)} }

// TestOrderAcrossFailures: batches lost on the way or whose
// acknowledgement is lost are sent again; the receiver applies every
// message once, in the order sent.
func TestOrderAcrossFailures(t *testing.T) {
	before := runtime.NumGoroutine()
	n := newNet()
	n.fail = func(from, to string, attempt int) (bool, bool) {
		return attempt%3 == 1, attempt%3 == 2 // lost, then applied but unacknowledged, then fine
	}
	a := n.add("a", Config{MaxBatch: 64})
	b := n.add("b", Config{})
	const count = 300
	for i := range count {
		a.Send("b", end(i))
		if i%50 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	waitUntil(t, "all delivered", func() bool { return a.Queued("b") == 0 && len(n.received("b")) >= count })
	got := n.received("b")
	if len(got) != count {
		t.Fatalf("%d messages applied, want %d", len(got), count)
	}
	for i, g := range got {
		if g != fmt.Sprintf("a:%d", i) {
			t.Fatalf("message %d is %s", i, g)
		}
	}
	st, bst := a.Stats(), b.Stats()
	if st.Sent != count || st.Retries == 0 || bst.Repeats == 0 || bst.Received != count {
		t.Fatalf("sender %+v, receiver %+v", st, bst)
	}
	a.Close()
	b.Close()
	waitUntil(t, "goroutines end", func() bool { return runtime.NumGoroutine() <= before })
}

// TestBatches: messages sent while batches are on their way go together
// in the next ones: at most a window's worth of batches besides the first.
func TestBatches(t *testing.T) {
	n := newNet()
	n.block = make(chan struct{})
	a := n.add("a", Config{})
	n.add("b", Config{})
	a.Send("b", end(0)) // on its way, blocked
	waitUntil(t, "first batch sent", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.tries["a>b"] == 1
	})
	for i := 1; i <= 1000; i++ {
		a.Send("b", end(i))
	}
	close(n.block)
	waitUntil(t, "all delivered", func() bool { return len(n.received("b")) == 1001 })
	if st := a.Stats(); st.Batches > 1+Window {
		t.Fatalf("%d batches for a message and 1000 sent behind it, want at most %d", st.Batches, 1+Window)
	}
	a.Close()
}

// TestDropDiscardsAndReports: a gone peer's queue is discarded, counted and
// reported; later messages go out again.
func TestDropDiscardsAndReports(t *testing.T) {
	n := newNet()
	var logs []string
	var logMu sync.Mutex
	var unreachable sync.WaitGroup
	unreachable.Add(1)
	a := n.add("a", Config{UnreachableAfter: 20 * time.Millisecond, Unreachable: func(string) { unreachable.Done() },
		Log: func(s string) { logMu.Lock(); logs = append(logs, s); logMu.Unlock() }})
	for i := range 10 {
		a.Send("nowhere", end(i)) // no such node: every attempt fails
	}
	unreachable.Wait()
	a.Drop("nowhere")
	if st := a.Stats(); st.Dropped != 10 || st.Retries == 0 {
		t.Fatalf("after a drop: %+v", st)
	}
	logMu.Lock()
	if len(logs) != 1 || !strings.Contains(logs[0], "discarded: it is gone") {
		t.Fatalf("log %q", logs)
	}
	logMu.Unlock()
	n.add("nowhere", Config{})
	a.Send("nowhere", end(99))
	waitUntil(t, "delivered after the node came", func() bool { return len(n.received("nowhere")) == 1 })
	a.Close()
}

// TestOutputCut: past the queue bound output is dropped, and the job's
// next output that fits says how much.
func TestOutputCut(t *testing.T) {
	n := newNet()
	n.block = make(chan struct{})
	a := n.add("a", Config{MaxOutputQueue: 100})
	n.add("b", Config{})
	a.Send("b", &peerwire.Output{Job: "j", Data: []byte("on its way\n")})
	waitUntil(t, "first batch sent", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.tries["a>b"] == 1
	})
	line := strings.Repeat("x", 20) + "\n"
	for range 20 {
		a.Send("b", &peerwire.Output{Job: "j", Data: []byte(line)})
	}
	a.Send("b", end(7)) // control messages are never cut
	cut := a.Stats().OutputCut
	if cut == 0 || cut%uint64(len(line)) != 0 {
		t.Fatalf("cut %d bytes", cut)
	}
	close(n.block)
	waitUntil(t, "queue drained", func() bool { return a.Queued("b") == 0 })
	a.Send("b", &peerwire.Output{Job: "j", Data: []byte("after\n")})
	// Sent is not yet received: wait for the last line to arrive.
	waitUntil(t, "the last line received", func() bool {
		got := n.received("b")
		return len(got) > 0 && got[len(got)-1] == "a:j:after\n"
	})
	got := n.received("b")
	var noticed uint64
	control := false
	for _, g := range got {
		var k uint64
		if _, err := fmt.Sscanf(g, "a:j:fabric: %d bytes of output were dropped", &k); err == nil {
			noticed += k
		}
		control = control || g == "a:7"
	}
	if noticed != cut || !control || got[len(got)-1] != "a:j:after\n" {
		t.Fatalf("cut %d bytes, notices say %d; received %q", cut, noticed, got)
	}
	a.Close()
}

// TestRestartedSender: a sender with a new session (an agent that
// restarted) starts its numbering again and is applied.
func TestRestartedSender(t *testing.T) {
	b := New(Config{Send: func(context.Context, string, []byte) error { return nil }})
	defer b.Close()
	apply := func(session, seq uint64) int {
		e, _ := peerwire.Encode(end(1))
		body, _ := peerwire.EncodeBatch(peerwire.Batch{Session: session, Seq: seq, Msgs: []peerwire.Envelope{e}})
		before := b.Stats().Received
		applied := make(chan int, 1)
		if err := b.Receive("a", body, func(m []peerwire.Message) { applied <- len(m) }); err != nil {
			t.Fatal(err)
		}
		select {
		case n := <-applied:
			return n
		case <-time.After(100 * time.Millisecond):
			if b.Stats().Received != before {
				t.Fatal("applied without calling apply")
			}
			return 0
		}
	}
	if apply(1, 0) != 1 || apply(1, 1) != 1 || apply(1, 1) != 0 || apply(1, 0) != 0 {
		t.Fatal("session 1: a repeat was applied or a new batch was not")
	}
	if apply(2, 0) != 1 {
		t.Fatal("a restarted sender's first batch was not applied")
	}
	if err := b.Receive("a", []byte{0xff}, func([]peerwire.Message) { t.Fatal("garbage applied") }); !errors.Is(err, peerwire.ErrMalformed) {
		t.Fatalf("garbage: %v", err)
	}
}
