//go:build linux

package fabric

import (
	"context"
	"errors"
	"fmt"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/core"
	"github.com/wasmfabric/fabric/internal/membership"
	"github.com/wasmfabric/fabric/internal/objects"
)

// Actor names in the control plane. The core asks for a name
// (RegisterName) before it makes a named actor and looks up the names it
// does not know (LookupName); the node carries these out on goroutines of
// their own, through the agent, and steps the answers. A name is freed
// when its actor dies (UnregisterName) and, by the leader, when the node
// that owns it leaves the cluster or fails.

// errNameTaken is the control plane's answer to a name another actor
// holds.
var errNameTaken = errors.New("fabric: another actor holds the name")

// names reaches the cluster's registry of actor names.
type names interface {
	RegisterName(ctx context.Context, r core.RegisterName) (*core.NamedActor, error)
	UnregisterName(ctx context.Context, r core.UnregisterName) error
	LookupName(ctx context.Context, r core.LookupName) (*core.NamedActor, error)
}

// registerName carries out a RegisterName: NameRegistered follows.
func (n *Node) registerName(e core.RegisterName) {
	reg := n.names
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ev := core.NameRegistered{Actor: e.Actor}
		if reg == nil {
			ev.Err = "this node is in no cluster"
		} else if h, err := reg.RegisterName(n.ctx, e); err != nil {
			ev.Err, ev.Holder = err.Error(), h
		}
		n.step(ev)
	}()
}

// unregisterName carries out an UnregisterName.
func (n *Node) unregisterName(e core.UnregisterName) {
	reg := n.names
	if reg == nil {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := reg.UnregisterName(n.ctx, e); err != nil && n.ctx.Err() == nil {
			// The name stays until this node makes another actor of it
			// (which replaces a dead holder of its own) or leaves.
			n.log.write(true, fmt.Appendf(nil, "fabric: freeing the name %q of actor %s in the control plane: %v\n", e.Name, e.Actor.Short(), err))
		}
	}()
}

// lookupName carries out a LookupName: NameFound follows.
func (n *Node) lookupName(e core.LookupName) {
	reg := n.names
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ev := core.NameFound{Seq: e.Seq}
		if reg == nil {
			ev.Err = "this node is in no cluster"
		} else if h, err := reg.LookupName(n.ctx, e); err != nil {
			ev.Err = err.Error()
		} else {
			ev.Holder = h
		}
		n.step(ev)
	}()
}

// RegisterName records a named actor or placement group of this node in
// the control plane; when another holds the name, it says which.
func (a *Agent) RegisterName(ctx context.Context, r core.RegisterName) (*core.NamedActor, error) {
	c := &controlstate.NameActor{ActorName: controlstate.ActorName{Namespace: r.Namespace, Name: r.Name, Job: string(r.Job),
		Actor: r.Actor[:], Node: a.ID, Class: r.Class, Detached: r.Detached, Time: nowMillis(), Group: r.Group, Tenant: r.Tenant}}
	if !r.Replaces.IsNil() {
		c.Replaces = r.Replaces[:]
	}
	err := a.proposeProved(ctx, controlstate.Command{NameActor: c}, encodeModuleProof(r.Proof.Job, r.Tenant, r.Proof.Root, r.Proof.Module, r.Proof.Grant))
	if errors.Is(err, errNameTaken) {
		if h, lerr := a.LookupName(ctx, core.LookupName{Namespace: r.Namespace, Name: r.Name, Job: r.Job, Group: r.Group, Tenant: r.Tenant}); lerr == nil && h != nil {
			return h, err
		}
	}
	return nil, err
}

// UnregisterName frees a name in the control plane if the actor still
// holds it.
func (a *Agent) UnregisterName(ctx context.Context, r core.UnregisterName) error {
	return a.propose(ctx, controlstate.Command{UnnameActor: &controlstate.UnnameActor{Namespace: r.Namespace, Name: r.Name, Job: string(r.Job), Actor: r.Actor[:], Group: r.Group, Tenant: r.Tenant}})
}

// LookupName asks the control plane which actor holds a name (nil: none).
func (a *Agent) LookupName(ctx context.Context, r core.LookupName) (*core.NamedActor, error) {
	if r.Namespace == abi.ServeNamespace && !r.Group {
		return a.pickReplica(ctx, r.Tenant, r.Name)
	}
	ans, err := a.control(ctx, controlRequest{Op: "name", Namespace: r.Namespace, Name: r.Name, ID: string(r.Job), Group: r.Group, Tenant: r.Tenant})
	if err != nil || len(ans.Names) == 0 {
		return nil, err
	}
	rec := ans.Names[0]
	id, err := objects.IDFromBytes(rec.Actor)
	if err != nil {
		return nil, fmt.Errorf("fabric: the control plane names a malformed actor ID: %w", err)
	}
	return &core.NamedActor{Actor: id, Node: core.NodeID(rec.Node), Class: rec.Class}, nil
}

// forgetLostNames frees, on the leader, the names owned by nodes that
// failed or left: their actors went with them.
func (a *Agent) forgetLostNames() {
	var owners []string
	if err := a.ctl.Read(controlTimeout, func(s *controlstate.State) { owners = s.NamesOwnedBy() }); err != nil {
		return
	}
	for _, node := range owners {
		if node == a.ID {
			continue
		}
		if m, ok := a.member(node); ok && (m.Status == membership.Dead || m.Status == membership.Left) {
			if err := a.propose(a.agentCtx, controlstate.Command{ForgetNode: &controlstate.ForgetNode{Node: node}}); err != nil {
				a.warnf("freeing the actor names of node %s, which %s: %v", node, m.Status, err)
			}
		}
	}
}
