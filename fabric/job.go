package fabric

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/wasmfabric/fabric/internal/core"
	"github.com/wasmfabric/fabric/internal/sandbox"
	"github.com/wasmfabric/fabric/internal/wire"
)

// RunJob runs the module's `main` with args on this node and returns its
// error. ctx bounds the whole job: when it ends, the job's workers are killed.
// Output goes to the node's Stdout and Stderr.
func (n *Node) RunJob(ctx context.Context, wasm []byte, args []string) error {
	return n.RunJobWith(ctx, wasm, args, JobOptions{})
}

// JobOptions are per-job settings of RunJobWith.
type JobOptions struct {
	// Stdout and Stderr receive the job's guest output (nil: the node's).
	// A writer that blocks holds up only this job's output: past
	// OutputBuffer bytes not yet written, output is dropped, and a notice
	// on Stderr says how much.
	Stdout, Stderr io.Writer
	// OutputBuffer bounds the output held for the writers (0:
	// DefaultOutputBuffer).
	OutputBuffer int
	// Abort, when set, makes a blocked write to Stdout or Stderr return.
	// It is called when the job has ended and its writer has made no
	// progress for 5 s (the HTTP API sets a write deadline).
	Abort func()
	// Lossless makes the job's workers wait for a slow writer instead of
	// the output being dropped: for a job that has the node to itself
	// (`fabric run`), as a program waits for a paused terminal. A waiting
	// worker keeps its CPUs, so a shared node must not use it.
	Lossless bool
}

// newJobID returns a fresh job ID: 16 random hex digits.
func newJobID() core.JobID {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return core.JobID(hex.EncodeToString(b[:]))
}

// addModule validates a module and keeps it in the node's modules,
// returning its digest.
func (n *Node) addModule(wasm []byte) (string, error) {
	if _, err := sandbox.Validate(wasm, sandbox.Limits{MaxMemoryPages: uint32(n.cfg.GuestMemoryLimit / sandbox.WasmPageSize)}); err != nil {
		return "", err
	}
	digest := sandbox.Digest(wasm)
	path := n.modulePath(digest)
	if _, err := os.Stat(path); err == nil {
		return digest, nil
	}
	f, err := os.CreateTemp(n.dataDir+"/modules", digest+".*.tmp")
	if err != nil {
		return "", err
	}
	_, werr := f.Write(wasm)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), path)
	}
	if werr != nil {
		_ = os.Remove(f.Name())
		return "", werr
	}
	return digest, nil
}

// RunJobWith is RunJob with per-job options.
func (n *Node) RunJobWith(ctx context.Context, wasm []byte, args []string, o JobOptions) error {
	digest, err := n.addModule(wasm)
	if err != nil {
		return err
	}
	argv, err := wire.Marshal([]any{args})
	if err != nil {
		return err
	}
	id := newJobID()
	h := &jobHandle{result: make(chan string, 1), ended: make(chan struct{}),
		out: newJobOutput(cmp.Or[io.Writer](o.Stdout, n.cfg.Stdout), cmp.Or[io.Writer](o.Stderr, n.cfg.Stderr), o.OutputBuffer, o.Abort)}
	h.out.lossless = o.Lossless
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		h.out.close()
		return ErrClosed
	}
	n.jobs[id] = h
	n.mu.Unlock()
	n.step(core.SubmitJob{Job: id, Digest: digest, Args: argv})

	var msg string
	var res error
	start := time.Now()
	select {
	case msg = <-h.result:
	case <-ctx.Done():
		res = fmt.Errorf("%w after %s", ErrJobTimeout, time.Since(start).Round(time.Millisecond))
		if errors.Is(ctx.Err(), context.Canceled) {
			res = errors.New("fabric: job cancelled")
		}
		n.step(core.CancelJob{Job: id, Reason: res.Error()})
		<-h.result
	}
	<-h.ended
	h.out.close()
	if res != nil {
		return res
	}
	if msg != "" {
		return errors.New(msg)
	}
	return nil
}
