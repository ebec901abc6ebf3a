package fabric

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wasmfabric/fabric/objects"
	"github.com/wasmfabric/fabric/transport"
)

// ErrNoObject means the node holds no ready value under the ID.
var ErrNoObject = errors.New("fabric: no such object on this node")

// PutObject stores data as a new object that belongs to no job, for the
// cluster's own use (tests, benchmarks, broadcast). It lives until
// DeleteObject.
func (n *Node) PutObject(data []byte) (objects.ID, error) {
	id := newID()
	dst, commit, err := n.receive(id, int64(len(data)))
	if err != nil {
		return id, err
	}
	copy(dst, data)
	return id, commit(true)
}

// DeleteObject drops a hold on an object made by PutObject or pulled from
// another node; the object goes with the last one.
func (n *Node) DeleteObject(id objects.ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if o := n.objs[id]; o != nil && o.job == nil {
		n.decRef(id)
	}
}

// objectBytes returns a ready object's value for a peer, pinned until
// release. Error values are not served.
func (n *Node) objectBytes(id objects.ID) ([]byte, func(), error) {
	n.mu.Lock()
	o := n.objs[id]
	if o == nil || !o.ready || o.isError {
		n.mu.Unlock()
		return nil, nil, ErrNoObject
	}
	if !o.stored {
		b := o.inline
		n.mu.Unlock()
		return b, func() {}, nil
	}
	loc, err := n.store.Pin(id)
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
type agentObjects struct{ n *Node }

func (s agentObjects) Object(id [transport.IDSize]byte) ([]byte, func(), bool) {
	if b, release, err := s.n.objectBytes(objects.ID(id)); err == nil {
		return b, release, true
	}
	// Modules travel as objects too, named by the first bytes of their
	// SHA-256 digest; the puller checks the whole digest.
	matches, _ := filepath.Glob(filepath.Join(s.n.dataDir, "modules", hex.EncodeToString(id[:])+"*.wasm"))
	if len(matches) != 1 {
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

// HasModule reports whether the node has the module with the digest.
func (n *Node) HasModule(digest string) bool {
	_, err := os.Stat(filepath.Join(n.dataDir, "modules", digest+".wasm"))
	return err == nil
}

// PullModule copies a module, by its SHA-256 digest (hex), from another
// node into this node's modules, unless it is here already. The bytes are
// checked against the digest.
func (a *Agent) PullModule(ctx context.Context, nodeID, digest string) error {
	raw, err := hex.DecodeString(digest)
	if err != nil || len(raw) != 32 {
		return fmt.Errorf("%w: %q", ErrBadDigest, digest)
	}
	if a.node.HasModule(digest) {
		return nil
	}
	for _, m := range a.members.Members() {
		if m.ID != nodeID {
			continue
		}
		var buf []byte
		_, err := a.quic.Pull(ctx, m.QUIC, [transport.IDSize]byte(raw[:transport.IDSize]), func(size int64) ([]byte, error) {
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
	return fmt.Errorf("%w: %q", ErrUnknownNode, nodeID)
}

// ReadObject returns a copy of a ready object's value.
func (n *Node) ReadObject(id objects.ID) ([]byte, error) {
	b, release, err := n.objectBytes(id)
	if err != nil {
		return nil, err
	}
	defer release()
	return append([]byte(nil), b...), nil
}

// receive reserves room for an object arriving from another node under id,
// in the arena when it fits. commit(true) makes it a ready object of no
// job (DeleteObject drops it); commit(false) gives the room back.
func (n *Node) receive(id objects.ID, size int64) (dst []byte, commit func(ok bool) error, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, nil, ErrClosed
	}
	if _, ok := n.objs[id]; ok {
		return nil, nil, fmt.Errorf("fabric: object %s is already on this node", id.Short())
	}
	dst, keep, err := n.reserve(id, size)
	if err != nil {
		return nil, nil, err
	}
	return dst, func(ok bool) error {
		n.mu.Lock()
		defer n.mu.Unlock()
		stored, err := keep(ok)
		if err != nil || !ok {
			return err
		}
		if _, taken := n.objs[id]; taken {
			if stored {
				n.store.Delete(id)
			}
			return fmt.Errorf("fabric: object %s is already on this node", id.Short())
		}
		inline := []byte(nil)
		if !stored {
			inline = dst
		}
		n.objs[id] = &object{refs: 1}
		n.setReady(id, inline, false, stored, nil)
		n.objs[id].size = size
		return nil
	}, nil
}

// reserve makes room for size bytes arriving under id: in the arena when
// they fit, else in memory. keep(true) puts them in the store (stored) or
// leaves them as an inline value in dst (small ones); keep(false) gives the
// room back. keep does not take n.mu.
func (n *Node) reserve(id objects.ID, size int64) (dst []byte, keep func(ok bool) (stored bool, err error), err error) {
	if size > 100<<10 {
		if off, cerr := n.store.Create(id, size); cerr == nil {
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
		if !ok || size <= 100<<10 {
			return false, nil
		}
		return true, n.store.Put(id, buf)
	}, nil
}

// PullObject copies an object from another node of the cluster into this
// node's store, under the same ID. The copy lives until DeleteObject.
func (a *Agent) PullObject(ctx context.Context, nodeID string, id objects.ID, o transport.PullOptions) (transport.PullStats, error) {
	for _, m := range a.members.Members() {
		if m.ID != nodeID {
			continue
		}
		var commit func(bool) error
		st, err := a.quic.Pull(ctx, m.QUIC, [transport.IDSize]byte(id), func(size int64) ([]byte, error) {
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
	return transport.PullStats{}, fmt.Errorf("%w: %q", ErrUnknownNode, nodeID)
}
