//go:build linux

package fabric

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/peerwire"
)

// Grants. A job's work opens a share on another node only with the job's
// grant: the servers' signature (with the CA's key) of the job's ID, its
// tenant, its root (the node that runs its driver) and its module's
// digest. The root gets it when the driver starts: from the leader, which
// signs it for a job the control state says runs on the asking node with
// that module, or for the tenant of the API caller whose token the node
// relays (a call), when the tenant sees the module. Every node checks a
// new share's grant against the CA's certificate; a share takes more
// work, and the root a share's notice, only with the same grant and
// module. So no member can run work in a tenant's name, or with a module,
// that the servers did not grant, and a node that never received a job's
// work cannot act in it. A grant also opens the job's module: a node
// serves a module only to a node that shows a grant for it (moduleproof.go).

// grantFor gets a grant for a job whose root is root: signed here on a
// server, else by the leader. Without one (no leader) the job runs, but
// its work stays on this node: it is logged.
func (a *Agent) grantFor(ctx context.Context, job, tenant, root, controlJob, module string) []byte {
	if a.cluster.CanSign() {
		g, err := a.cluster.SignGrant(job, tenant, root, module)
		if err != nil {
			a.warnf("fabric agent: signing job %s's grant: %v", job, err)
		}
		return g
	}
	ans, err := a.control(ctx, controlRequest{Op: "grant", ID: job, Tenant: tenant, Name: root, Namespace: controlJob, Module: module})
	if err != nil {
		a.warnf("fabric agent: job %s has no grant, so its work stays on this node: %v", job, err)
		return nil
	}
	return ans.Grant
}

// grantAnswer signs a grant on the leader for p, when p may have it: a
// server any; a member for a job the control state says runs its driver
// there, in the job's tenant, with the module, rooted at the member; with
// a relayed token, for the token's tenant (any, for a cluster admin
// token) and a module the tenant sees, rooted at the member or at a call
// of it.
func (a *Agent) grantAnswer(s *controlstate.State, p controlPrincipal, req controlRequest) (controlAnswer, error) {
	job, tenant, root, controlJob, module := req.ID, req.Tenant, req.Name, req.Namespace, req.Module
	ok := p.server
	if !ok && (root == p.node || strings.HasPrefix(root, callPeerPrefix)) && p.caller != nil {
		m, found := s.Module(module)
		ok = found && (p.caller.cluster || p.caller.token.Tenant == tenant && p.caller.seesModule(m))
	}
	if !ok && strings.HasPrefix(root, servePeerPrefix) && p.node != "" {
		// A member hosts replicas of a deployment of the tenant's module.
		for _, d := range s.Deployments() {
			ok = ok || d.Tenant == tenant && d.Digest == module
		}
	}
	if !ok && root == p.node && controlJob != "" {
		j, found := s.Job(controlJob)
		ok = found && j.Node == p.node && j.Tenant == tenant && j.Digest == module && !j.State.Ended()
	}
	if !ok {
		return controlAnswer{}, fmt.Errorf("%w: node %s may not have a grant for a job of tenant %q rooted at %q with module %.12s", errNotAllowed, p.node, tenant, root, module)
	}
	g, err := a.cluster.SignGrant(job, tenant, root, module)
	return controlAnswer{Grant: g}, err
}

// grantChecker checks grants against the CA's certificate and remembers
// the good ones, so that a job's every message costs one map lookup, not
// a signature check. The agent checks the grants of a batch's task runs
// before the batch reaches the core (outside the node's lock), so that a
// member sending bad grants slows its own link, not the node's jobs; a
// bad grant is cleared, and the core refuses the run at no cost.
type grantChecker struct {
	verify func(job, tenant, root, module string, grant []byte) error
	mu     sync.Mutex
	good   map[string]struct{}
}

// maxGoodGrants bounds the grants remembered; past it they are forgotten
// and checked again.
const maxGoodGrants = 4096

func (g *grantChecker) check(job, tenant, root, module string, grant []byte) error {
	key := job + "\x00" + tenant + "\x00" + root + "\x00" + module + "\x00" + string(grant)
	g.mu.Lock()
	_, ok := g.good[key]
	g.mu.Unlock()
	if ok {
		return nil
	}
	if err := g.verify(job, tenant, root, module, grant); err != nil {
		return err
	}
	g.mu.Lock()
	if g.good == nil || len(g.good) >= maxGoodGrants {
		g.good = map[string]struct{}{}
	}
	g.good[key] = struct{}{}
	g.mu.Unlock()
	return nil
}

// screen clears the grant of every task run in msgs whose grant is not
// the servers' (a run with no grant stays as it is).
func (g *grantChecker) screen(msgs []peerwire.Message) {
	for _, m := range msgs {
		if r, ok := m.(*peerwire.RunTask); ok && len(r.Grant) > 0 && g.check(r.Job, r.Tenant, r.Root, r.Digest, r.Grant) != nil {
			r.Grant = nil
		}
	}
}
