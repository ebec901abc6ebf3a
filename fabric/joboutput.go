//go:build linux

package fabric

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// DefaultOutputBuffer bounds the output a node holds for one job that its
// reader has not taken yet.
const DefaultOutputBuffer = 4 << 20

// outputStall is how long a job that ended waits for its output reader to
// make progress before it gives up on what is left.
const outputStall = 5 * time.Second

// jobOutput carries one job's output to its writers: a bounded buffer that
// only this job's goroutine drains. Write never blocks, so a reader that
// stops reading (a paused terminal, a stuck HTTP client) holds up nobody:
// past the bound its job's output is dropped, and a notice says how much
// once the reader takes output again.
type jobOutput struct {
	stdout, stderr io.Writer
	max            int
	abort          func()
	// lossless: write never drops; producers wait for room (waitRoom).
	lossless bool

	mu       sync.Mutex
	queue    []outputChunk
	size     int   // bytes in queue
	dropped  int64 // bytes dropped since the last notice
	closed   bool
	progress time.Time // when the writer last finished a write
	wake     chan struct{}
	done     chan struct{}
	room     *sync.Cond // signalled when the writer took a chunk
}

type outputChunk struct {
	stderr bool
	data   []byte
}

// newJobOutput starts the writer goroutine of a job's output. abort, when
// set, makes a blocked Write return (Close calls it when the reader has
// stalled).
func newJobOutput(stdout, stderr io.Writer, max int, abort func()) *jobOutput {
	if max <= 0 {
		max = DefaultOutputBuffer
	}
	o := &jobOutput{stdout: stdout, stderr: stderr, max: max, abort: abort,
		wake: make(chan struct{}, 1), done: make(chan struct{}), progress: time.Now()}
	o.room = sync.NewCond(&o.mu)
	go o.run()
	return o
}

// waitRoom waits until n more bytes fit, or the output is closed. A
// lossless job's workers call it before their output goes in, so that a
// slow reader slows the job instead of losing its output.
func (o *jobOutput) waitRoom(n int) {
	o.mu.Lock()
	for !o.closed && o.size > 0 && o.size+n > o.max {
		o.room.Wait()
	}
	o.mu.Unlock()
}

// write queues output for the job's stdout (stderr false) or stderr. It
// never blocks; past the bound the bytes are dropped and counted.
func (o *jobOutput) write(stderr bool, p []byte) {
	if len(p) == 0 {
		return
	}
	o.mu.Lock()
	switch {
	case o.closed:
	case o.size+len(p) > o.max && !o.lossless:
		o.dropped += int64(len(p))
	default:
		o.queue = append(o.queue, outputChunk{stderr: stderr, data: append([]byte(nil), p...)})
		o.size += len(p)
	}
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Stdout and Stderr are the job's two streams as writers that never block.
func (o *jobOutput) Stdout() io.Writer { return outputStream{o, false} }
func (o *jobOutput) Stderr() io.Writer { return outputStream{o, true} }

type outputStream struct {
	o      *jobOutput
	stderr bool
}

func (s outputStream) Write(p []byte) (int, error) {
	s.o.write(s.stderr, p)
	return len(p), nil
}

func (o *jobOutput) run() {
	defer close(o.done)
	for {
		o.mu.Lock()
		for len(o.queue) == 0 && o.dropped == 0 && !o.closed {
			o.mu.Unlock()
			<-o.wake
			o.mu.Lock()
		}
		if len(o.queue) == 0 && o.dropped == 0 {
			o.mu.Unlock()
			return // closed and drained
		}
		var c outputChunk
		if o.dropped > 0 {
			c = outputChunk{stderr: true, data: fmt.Appendf(nil, "fabric: %d bytes of this job's output were dropped: its reader fell behind\n", o.dropped)}
			o.dropped = 0
		} else {
			c = o.queue[0]
			o.queue[0] = outputChunk{}
			o.queue = o.queue[1:]
			o.size -= len(c.data)
		}
		o.mu.Unlock()
		w := o.stdout
		if c.stderr {
			w = o.stderr
		}
		_, err := w.Write(c.data)
		o.mu.Lock()
		o.progress = time.Now()
		if err != nil { // the reader is gone: nothing more can reach it
			o.closed = true
			o.queue, o.size, o.dropped = nil, 0, 0
		}
		o.room.Broadcast()
		o.mu.Unlock()
	}
}

// close stops taking output and waits until what is queued is written, for
// as long as the writer makes progress; a writer stalled for outputStall is
// aborted (when it can be) and left behind.
func (o *jobOutput) close() {
	o.mu.Lock()
	o.closed = true
	o.room.Broadcast()
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	t := time.NewTicker(outputStall / 10)
	defer t.Stop()
	for {
		select {
		case <-o.done:
			return
		case <-t.C:
		}
		o.mu.Lock()
		stalled := time.Since(o.progress) > outputStall
		o.mu.Unlock()
		if !stalled {
			continue
		}
		if o.abort != nil {
			o.abort()
			select {
			case <-o.done:
			case <-time.After(outputStall):
			}
		}
		return
	}
}
