package fabric

import (
	"context"
	"errors"
	"fmt"
	"os"

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
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return id, ErrClosed
	}
	n.objs[id] = &object{refs: 1}
	stored := len(data) > 100<<10
	var inline []byte
	if stored {
		if err := n.store.Put(id, data); err != nil {
			delete(n.objs, id)
			return id, err
		}
	} else {
		inline = append([]byte(nil), data...)
	}
	n.setReady(id, inline, false, stored, nil)
	n.objs[id].size = int64(len(data))
	return id, nil
}

// DeleteObject drops an object made by PutObject.
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
	b, release, err := s.n.objectBytes(objects.ID(id))
	if err != nil {
		return nil, nil, false
	}
	return b, release, true
}

// PullObject fetches an object from another node of the cluster.
func (a *Agent) PullObject(ctx context.Context, nodeID string, id objects.ID, o transport.PullOptions) ([]byte, transport.PullStats, error) {
	for _, m := range a.members.Members() {
		if m.ID == nodeID {
			var out []byte
			st, err := a.quic.Pull(ctx, m.QUIC, [transport.IDSize]byte(id), func(size int64) ([]byte, error) {
				out = make([]byte, size)
				return out, nil
			}, o)
			return out, st, err
		}
	}
	return nil, transport.PullStats{}, fmt.Errorf("%w: %q", ErrUnknownNode, nodeID)
}
