//go:build linux

package fabric

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// gateWriter blocks every Write until it is opened, then records.
type gateWriter struct {
	open chan struct{}
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (g *gateWriter) Write(p []byte) (int, error) {
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.Write(p)
}

func (g *gateWriter) String() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.String()
}

// TestJobOutputDropsPastItsBound: while the writer blocks, writes return
// at once; what does not fit is dropped and counted, and a notice says so
// when the writer takes output again.
func TestJobOutputDropsPastItsBound(t *testing.T) {
	g := &gateWriter{open: make(chan struct{})}
	o := newJobOutput(g, g, 100, nil)
	start := time.Now()
	o.Stdout().Write([]byte("first\n")) // taken by the writer, which blocks
	time.Sleep(20 * time.Millisecond)
	for range 100 {
		o.Stdout().Write([]byte(strings.Repeat("x", 9) + "\n"))
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("writes took %s while the writer was blocked", d)
	}
	close(g.open)
	o.close()
	out := g.String()
	if !strings.HasPrefix(out, "first\n") || strings.Count(out, "xxxxxxxxx\n") != 10 ||
		!strings.Contains(out, "fabric: 900 bytes of this job's output were dropped: its reader fell behind\n") {
		t.Fatalf("output:\n%s", out)
	}
}

// TestJobOutputStalledReader: close gives up on a writer that makes no
// progress, after calling abort, which unblocks it.
func TestJobOutputStalledReader(t *testing.T) {
	g := &gateWriter{open: make(chan struct{})}
	aborted := make(chan struct{})
	o := newJobOutput(g, g, 100, func() { close(aborted); close(g.open) })
	o.Stderr().Write([]byte("stuck\n"))
	start := time.Now()
	o.close()
	select {
	case <-aborted:
	default:
		t.Fatal("close returned without aborting the stalled writer")
	}
	if d := time.Since(start); d < outputStall || d > 3*outputStall {
		t.Fatalf("close took %s; the stall limit is %s", d, outputStall)
	}
	<-o.done
}

// failWriter fails every write.
type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	f.n++
	return 0, errors.New("gone")
}

// TestJobOutputReaderGone: once a write fails, the rest is discarded and
// close does not wait.
func TestJobOutputReaderGone(t *testing.T) {
	f := &failWriter{}
	o := newJobOutput(f, f, 1<<20, nil)
	for range 10 {
		o.Stdout().Write([]byte("line\n"))
	}
	o.close()
	<-o.done
	if f.n > 10 {
		t.Fatalf("%d writes to a writer that failed", f.n)
	}
}

// TestJobOutputLossless: a lossless job's output is never dropped; its
// producers wait for room instead.
func TestJobOutputLossless(t *testing.T) {
	g := &gateWriter{open: make(chan struct{})}
	o := newJobOutput(g, g, 100, nil)
	o.lossless = true
	o.Stdout().Write([]byte("first\n"))
	time.Sleep(20 * time.Millisecond) // the writer holds "first" and blocks
	for range 20 {
		o.Stdout().Write([]byte(strings.Repeat("y", 9) + "\n"))
	}
	waited := make(chan struct{})
	go func() {
		o.waitRoom(50) // the buffer is past its bound: this waits
		close(waited)
	}()
	select {
	case <-waited:
		t.Fatal("waitRoom returned while the buffer was full")
	case <-time.After(50 * time.Millisecond):
	}
	close(g.open)
	<-waited
	o.close()
	if out := g.String(); strings.Count(out, "yyyyyyyyy\n") != 20 || strings.Contains(out, "dropped") {
		t.Fatalf("output:\n%s", out)
	}
}
