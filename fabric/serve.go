//go:build linux

package fabric

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/wasmfabric/fabric/internal/core"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/sandbox"
	"github.com/wasmfabric/fabric/internal/transport"
)

// ErrNoObject means the node holds no ready value under the ID.
var ErrNoObject = errors.New("fabric: no such object on this node")

// PutObject stores data as a new object that belongs to no job, for the
// cluster's own use (tests, benchmarks, broadcast). It lives until
// DeleteObject.
func (n *Node) PutObject(data []byte) (objects.ID, error) {
	var id objects.ID
	if _, err := rand.Read(id[:16]); err != nil {
		return id, err
	}
	dst, commit, err := n.receive(id, int64(len(data)))
	if err != nil {
		return id, err
	}
	copy(dst, data)
	return id, commit(true)
}

// DeleteObject drops the hold on an object made by PutObject or pulled
// from another node; the object goes with it.
func (n *Node) DeleteObject(id objects.ID) {
	n.step(core.DeleteObject{ID: id})
}

// objectBytes returns a ready object's value for peer, pinned until
// release: only to a peer the object was sent to ("": any, for this
// node's own use). Error values are not served.
func (n *Node) objectBytes(peer string, id objects.ID) ([]byte, func(), error) {
	n.mu.Lock()
	inline, stored, ok := n.core.ObjectBytes(id)
	if ok && peer != "" && !n.core.ObjectServedTo(id, core.NodeID(peer)) {
		ok = false
	}
	if !ok {
		n.mu.Unlock()
		return nil, nil, ErrNoObject
	}
	if !stored {
		n.mu.Unlock()
		return inline, func() {}, nil
	}
	loc, err := n.store.PinInPlace(id)
	n.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	release := func() { n.store.Unpin(id) }
	if loc.Path != "" {
		b, err := os.ReadFile(loc.Path)
		if err != nil {
			release()
			return nil, nil, err
		}
		return b, release, nil
	}
	return n.shm.Bytes()[loc.Offset : loc.Offset+loc.Size], release, nil
}

// agentObjects serves the node's objects to other agents.
type agentObjects struct {
	n *Node
	a *Agent
}

func (s agentObjects) Object(peer string, id [transport.IDSize]byte) ([]byte, func(), bool) {
	if s.a.peerMay(peer, transport.TypePull) != nil {
		return nil, nil, false
	}
	if b, release, err := s.n.objectBytes(peer, objects.ID(id)); err == nil {
		return b, release, true
	}
	// Modules travel as objects too, named by the first bytes of their
	// SHA-256 digest; the puller checks the whole digest. A module goes
	// only to a node that works with it (moduleproof.go).
	matches, _ := filepath.Glob(filepath.Join(s.n.dataDir, "modules", hex.EncodeToString(id[:])+"*.wasm"))
	if len(matches) != 1 || !s.a.mayServeModule(peer, strings.TrimSuffix(filepath.Base(matches[0]), ".wasm")) {
		return nil, nil, false
	}
	b, err := os.ReadFile(matches[0])
	if err != nil {
		return nil, nil, false
	}
	return b, func() {}, true
}

// ErrBadDigest means a module digest is not 64 hex digits.
var ErrBadDigest = errors.New("fabric: a module digest is 64 hex digits (sha256)")

// sentModule reports whether a job here with the module sent peer work.
func (n *Node) sentModule(peer, digest string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.SentModule(core.NodeID(peer), digest)
}

// HasModule reports whether the node has the module with the digest.
func (n *Node) HasModule(digest string) bool {
	_, err := os.Stat(n.modulePath(digest))
	return err == nil
}

// fetchModule makes a module another node sent work of ready here:
// fetched from that node when missing, checked against its digest, and
// validated. ModuleReady follows.
func (n *Node) fetchModule(e core.FetchModule) {
	cl := n.cluster
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ev := core.ModuleReady{Digest: e.Digest}
		err := error(nil)
		held := n.HasModule(e.Digest) // validated when it came
		if !held {
			if cl == nil {
				err = fmt.Errorf("module %.12s is not on node %s", e.Digest, n.cfg.NodeID)
			} else {
				err = cl.PullModule(n.ctx, string(e.From), e.Digest, nil)
			}
		}
		if err == nil && !held {
			var wasm []byte
			if wasm, err = os.ReadFile(n.modulePath(e.Digest)); err == nil {
				// Its code was read where it was uploaded; here it is
				// checked against this node's limits. The worker that
				// compiles it reads the code again.
				_, err = sandbox.ValidateSections(wasm, sandbox.Limits{MaxMemoryPages: uint32(n.cfg.GuestMemoryLimit / sandbox.WasmPageSize)})
			}
		}
		if err != nil {
			ev.Err = err.Error()
		}
		n.step(ev)
	}()
}

// pullModuleFrom makes sure the node holds a module: unless it does, it
// copies it from the first of holders that sends it, and checks it
// against the node's limits.
func (n *Node) pullModuleFrom(ctx context.Context, digest string, holders []string, proof []byte) error {
	if n.HasModule(digest) {
		return nil
	}
	n.mu.Lock()
	cl := n.cluster
	n.mu.Unlock()
	err := fmt.Errorf("fabric: no alive node is known to hold module %.12s", digest)
	if cl == nil {
		return err
	}
	for _, h := range holders {
		if h == n.cfg.NodeID {
			continue
		}
		if err = cl.PullModule(ctx, h, digest, proof); err == nil {
			var wasm []byte
			if wasm, err = os.ReadFile(n.modulePath(digest)); err == nil {
				_, err = sandbox.ValidateSections(wasm, sandbox.Limits{MaxMemoryPages: uint32(n.cfg.GuestMemoryLimit / sandbox.WasmPageSize)})
			}
			if err == nil {
				return nil
			}
		}
	}
	return err
}

// pullObject copies a stored object's bytes from the node that holds it
// into this node's store. ObjectPulled follows.
func (n *Node) pullObject(e core.PullObject) {
	cl := n.cluster
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ev := core.ObjectPulled{Job: e.Job, ID: e.ID, Size: e.Size}
		var keep func(bool) (bool, error)
		var buf []byte
		err := errors.New("this node is not in a cluster")
		if cl != nil {
			err = cl.Pull(n.ctx, string(e.From), e.As, func(size int64) ([]byte, error) {
				dst, k, err := n.reserve(e.Tenant, e.ID, size)
				keep, buf = k, dst
				ev.Size = size
				return dst, err
			})
		}
		if keep != nil {
			stored, kerr := keep(err == nil)
			if err == nil {
				err = kerr
			}
			if err == nil && !stored {
				err = n.store.PutFor(e.Tenant, e.ID, buf) // small: the core wants it in the store
			}
		}
		if err != nil {
			ev.Err = err.Error()
		}
		n.step(ev)
	}()
}

// PullModule copies a module, by its SHA-256 digest (hex), from another
// node into this node's modules, unless it is here already. The bytes are
// checked against the digest.
func (a *Agent) PullModule(ctx context.Context, nodeID, digest string, proof []byte) error {
	raw, err := hex.DecodeString(digest)
	if err != nil || len(raw) != 32 {
		return fmt.Errorf("%w: %q", ErrBadDigest, digest)
	}
	if a.node.HasModule(digest) {
		return nil
	}
	addr, err := a.addrOf(nodeID)
	if err != nil {
		return err
	}
	if err := a.proveModule(ctx, addr, proof); err != nil {
		return err
	}
	var buf []byte
	_, err = a.quic.Pull(ctx, addr, [transport.IDSize]byte(raw[:transport.IDSize]), func(size int64) ([]byte, error) {
		if size > MaxModuleSize {
			return nil, fmt.Errorf("fabric: module of %d bytes is larger than %d MiB", size, MaxModuleSize>>20)
		}
		buf = make([]byte, size)
		return buf, nil
	}, transport.PullOptions{})
	if err != nil {
		return err
	}
	if sum := sha256.Sum256(buf); hex.EncodeToString(sum[:]) != digest {
		return fmt.Errorf("fabric: node %s sent a module whose digest is not %s", nodeID, digest[:12])
	}
	// Several tasks may fetch the same module at once: each writes its
	// own temporary file, and the renames agree.
	dir := filepath.Join(a.node.dataDir, "modules")
	f, err := os.CreateTemp(dir, digest+".*.tmp")
	if err != nil {
		return err
	}
	_, werr := f.Write(buf)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), filepath.Join(dir, digest+".wasm"))
	}
	if werr != nil {
		_ = os.Remove(f.Name())
	}
	return werr
}

// ReadObject returns a copy of a ready object's value.
func (n *Node) ReadObject(id objects.ID) ([]byte, error) {
	b, release, err := n.objectBytes("", id)
	if err != nil {
		return nil, err
	}
	defer release()
	return append([]byte(nil), b...), nil
}

// receive reserves room for an object arriving under id, in the arena when
// it fits. commit(true) makes it a ready object of no job (DeleteObject
// drops it); commit(false) gives the room back.
func (n *Node) receive(id objects.ID, size int64) (dst []byte, commit func(ok bool) error, err error) {
	n.mu.Lock()
	closed, taken := n.closed, n.core.HasObject(id)
	n.mu.Unlock()
	if closed {
		return nil, nil, ErrClosed
	}
	if taken {
		return nil, nil, fmt.Errorf("fabric: object %s is already on this node", id.Short())
	}
	dst, keep, err := n.reserve("", id, size) // of no job: the operator's
	if err != nil {
		return nil, nil, err
	}
	return dst, func(ok bool) error {
		stored, err := keep(ok)
		if err != nil || !ok {
			return err
		}
		n.mu.Lock()
		taken := n.core.HasObject(id)
		n.mu.Unlock()
		if taken {
			if stored {
				n.store.Delete(id)
			}
			return fmt.Errorf("fabric: object %s is already on this node", id.Short())
		}
		ev := core.AddObject{ID: id, Stored: stored, Size: size}
		if !stored {
			ev.Inline = dst
		}
		n.step(ev)
		return nil
	}, nil
}

// reserve makes room for size bytes arriving under id: in the arena when
// they fit, else in memory. keep(true) puts them in the store (stored) or
// leaves them as an inline value in dst (small ones); keep(false) gives the
// room back. It may spill: call it without n.mu.
func (n *Node) reserve(tenant string, id objects.ID, size int64) (dst []byte, keep func(ok bool) (stored bool, err error), err error) {
	if size > sandbox.InlineMax {
		if off, cerr := n.store.CreateFor(tenant, id, size); cerr == nil {
			return n.shm.Bytes()[off : off+size], func(ok bool) (bool, error) {
				if !ok {
					n.store.Abort(id)
					return false, nil
				}
				return true, n.store.Seal(id)
			}, nil
		}
	}
	buf := make([]byte, size) // small, or larger than the arena: the store spills it
	return buf, func(ok bool) (bool, error) {
		if !ok || size <= sandbox.InlineMax {
			return false, nil
		}
		return true, n.store.PutFor(tenant, id, buf)
	}, nil
}

// PullObject copies an object from another node of the cluster into this
// node's store, under the same ID. The copy lives until DeleteObject.
func (a *Agent) PullObject(ctx context.Context, nodeID string, id objects.ID, o transport.PullOptions) (transport.PullStats, error) {
	addr, err := a.addrOf(nodeID)
	if err != nil {
		return transport.PullStats{}, err
	}
	var commit func(bool) error
	st, err := a.quic.Pull(ctx, addr, [transport.IDSize]byte(id), func(size int64) ([]byte, error) {
		dst, c, err := a.node.receive(id, size)
		commit = c
		return dst, err
	}, o)
	if commit != nil {
		if cerr := commit(err == nil); err == nil {
			err = cerr
		}
	}
	return st, err
}

// removeModule removes the node's copy of a module, unless a job here
// runs it (that job's workers may start more instances of it).
func (n *Node) removeModule(digest string) bool {
	n.mu.Lock()
	inUse := n.core.ModuleInUse(digest)
	n.mu.Unlock()
	// The file goes outside the core's lock: no I/O under it. A job that
	// starts in between finds the module gone and pulls it from a holder.
	return !inUse && os.Remove(n.modulePath(digest)) == nil
}

// moduleSize returns the size of a module the node holds (0 when it
// holds none).
func (n *Node) moduleSize(digest string) int64 {
	st, err := os.Stat(n.modulePath(digest))
	if err != nil {
		return 0
	}
	return st.Size()
}
