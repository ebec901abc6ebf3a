//go:build linux

package fabric

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

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
	// Tenant owns the job: its actors' namespaces and detached groups are
	// the tenant's ("": the cluster's operator's).
	Tenant string
	// controlJob is the job's ID in the control state, for its grant.
	controlJob string
	// id and grant, when id is set, are the job's ID in the core and its
	// grant, got before (to show for its module).
	id    core.JobID
	grant []byte
}

// newJobID returns a fresh job ID: 16 random hex digits.
func newJobID() core.JobID {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return core.JobID(hex.EncodeToString(b[:]))
}

// addModule keeps a module in the node's modules, validated, and returns
// its digest. The module goes from r straight to a file, hashed on the
// way; the file is then mapped read-only for validation, so an upload
// never sits in the agent's heap. Past MaxModuleSize it fails with
// ErrModuleTooLarge.
func (n *Node) addModule(r io.Reader) (string, error) {
	f, err := os.CreateTemp(filepath.Join(n.dataDir, "modules"), "upload.*.tmp")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename, a no-op
	h := sha256.New()
	src := &uploadReader{r: io.LimitReader(r, MaxModuleSize+1)}
	size, err := io.Copy(io.MultiWriter(f, h), src)
	if src.err != nil {
		err = fmt.Errorf("%w: %w", errUpload, src.err)
	}
	if err == nil && size > MaxModuleSize {
		err = fmt.Errorf("%w: more than %d MiB", ErrModuleTooLarge, MaxModuleSize>>20)
	}
	if err == nil && size == 0 {
		err = ErrNoModule
	}
	digest := hex.EncodeToString(h.Sum(nil))
	if err == nil {
		// A module the node holds was validated when it came: validation
		// reads all of its code (120 ms for a 5 MB Go guest).
		if _, serr := os.Stat(n.modulePath(digest)); serr != nil {
			err = n.validateFile(f, size)
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	if err := os.Rename(tmp, n.modulePath(digest)); err != nil {
		return "", err
	}
	return digest, nil
}

// errUpload wraps the errors of reading an uploaded module.
var errUpload = errors.New("fabric: reading the module")

// uploadReader keeps the error of its reader, to tell it from the file's.
type uploadReader struct {
	r   io.Reader
	err error
}

func (u *uploadReader) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	if err != nil && err != io.EOF {
		u.err = err
	}
	return n, err
}

// validateFile validates the module in f (size bytes), mapped read-only.
func (n *Node) validateFile(f *os.File, size int64) error {
	wasm, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("fabric: mapping the module: %w", err)
	}
	defer func() { _ = unix.Munmap(wasm) }()
	_, err = sandbox.Validate(wasm, sandbox.Limits{MaxMemoryPages: uint32(n.cfg.GuestMemoryLimit / sandbox.WasmPageSize)})
	return err
}

// RunJobWith is RunJob with per-job options.
func (n *Node) RunJobWith(ctx context.Context, wasm []byte, args []string, o JobOptions) error {
	digest, err := n.addModule(bytes.NewReader(wasm))
	if err != nil {
		return err
	}
	return n.runJob(ctx, digest, args, o)
}

// runJob runs the driver of a module the node holds.
func (n *Node) runJob(ctx context.Context, digest string, args []string, o JobOptions) error {
	argv, err := wire.Marshal([]any{args})
	if err != nil {
		return err
	}
	id := cmp.Or(o.id, newJobID())
	h := &jobHandle{result: make(chan core.JobResult, 1), ended: make(chan struct{}),
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
	grant := o.grant
	if n.cfg.grant != nil && o.id == "" {
		grant = n.cfg.grant(ctx, string(id), o.Tenant, n.cfg.NodeID, o.controlJob, digest)
	}
	n.step(core.SubmitJob{Job: id, Digest: digest, Args: argv, Tenant: o.Tenant, Grant: grant})

	var result core.JobResult
	var res error
	start := time.Now()
	select {
	case result = <-h.result:
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
	if result.Err != "" {
		return &JobError{Message: result.Err, ExitCode: int(result.ExitCode)}
	}
	return nil
}
