//go:build linux

package fabric

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/transport"
	"github.com/wasmfabric/fabric/internal/wire"
)

// Who may copy a module. A module is a tenant's code, so a node serves
// one only to a node that works with it:
//
//   - a node it sent work of a job with the module to (the core knows);
//   - a node it asked to copy the module (copyModuleAway);
//   - a node that showed a grant for the module (msgModuleProof): an
//     agent that starts a job's driver, or serves a call, asks the leader
//     for the job's grant first, which names the module, and shows it to
//     the node it copies the module from;
//   - a server.
//
// Knowing a module's digest is not enough.

// msgModuleProof shows a grant for a module to the node that holds it,
// before a pull; the holder then serves the module to the sender for a
// while (moduleAllowTTL).
const msgModuleProof transport.Type = 30

// moduleProof is msgModuleProof's body: a job's grant and what it binds.
type moduleProof struct {
	Job    string `cbor:"1,keyasint"`
	Tenant string `cbor:"2,keyasint,omitempty"`
	Root   string `cbor:"3,keyasint"`
	Module string `cbor:"4,keyasint"`
	Grant  []byte `cbor:"5,keyasint"`
}

// moduleAllowTTL is how long a node may copy a module once allowed.
const moduleAllowTTL = 5 * time.Minute

// maxModuleAllows bounds the allowances a node keeps; past it the
// expired ones go, and when none has, all do (a puller then shows its
// grant again).
const maxModuleAllows = 4096

// moduleAllows are the nodes allowed to copy modules from this one.
type moduleAllows struct {
	mu sync.Mutex
	m  map[string]time.Time // peer + "\x00" + digest: until
}

func (m *moduleAllows) allow(peer, digest string, until time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[string]time.Time{}
	}
	if len(m.m) >= maxModuleAllows {
		now := time.Now()
		for k, t := range m.m {
			if now.After(t) {
				delete(m.m, k)
			}
		}
		if len(m.m) >= maxModuleAllows {
			m.m = map[string]time.Time{}
		}
	}
	m.m[peer+"\x00"+digest] = until
}

func (m *moduleAllows) allowed(peer, digest string, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.m[peer+"\x00"+digest]
	return ok && !now.After(t)
}

// mayServeModule reports whether peer may copy the module from here.
func (a *Agent) mayServeModule(peer, digest string) bool {
	return a.isServerPeer(peer) || a.moduleAllows.allowed(peer, digest, time.Now()) || a.node.sentModule(peer, digest)
}

// handleModuleProof takes a peer's grant for a module.
func (a *Agent) handleModuleProof(peer string, body []byte) error {
	var p moduleProof
	if err := wire.Unmarshal(body, &p); err != nil {
		return fmt.Errorf("a malformed module proof: %v", err)
	}
	if !controlstate.ValidDigest(p.Module) {
		return fmt.Errorf("%q is not a module digest", p.Module)
	}
	if p.Root != peer && !strings.HasPrefix(p.Root, callPeerPrefix) {
		return fmt.Errorf("the grant is rooted at %q, not at node %s", p.Root, peer)
	}
	if err := a.grants.check(p.Job, p.Tenant, p.Root, p.Module, p.Grant); err != nil {
		return fmt.Errorf("the grant for module %.12s is not the servers': %v", p.Module, err)
	}
	a.moduleAllows.allow(peer, p.Module, time.Now().Add(moduleAllowTTL))
	return nil
}

// proveModule shows the grant in proof (encoded moduleProof; nil: none)
// to the node at addr.
func (a *Agent) proveModule(ctx context.Context, addr string, proof []byte) error {
	if proof == nil {
		return nil
	}
	_, _, err := a.quic.Call(ctx, addr, msgModuleProof, proof)
	return err
}

// encodeModuleProof makes a proof of a job's grant (nil without a grant).
func encodeModuleProof(job, tenant, root, module string, grant []byte) []byte {
	if len(grant) == 0 {
		return nil
	}
	return mustMarshal(moduleProof{Job: job, Tenant: tenant, Root: root, Module: module, Grant: grant})
}
