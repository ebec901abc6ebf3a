//go:build linux

package fabric

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/wire"
)

// The control plane's leader decides, in one place (controlAuthority),
// what each control request may read and change. A request acts for the
// member that sent it and, when the member relays an API request, for
// the caller whose token it relays (the token itself travels, and the
// leader checks it): what either may do is allowed. Servers hold the CA's
// key, so a server's requests are allowed whole. A member that is not a
// server may, on its own, record what happens on itself (its drivers'
// starts and ends, its copies of modules, the names of its actors) and
// read what its work needs; it may not act on another node's jobs, on
// tenants, tokens or nodes. So a member taken over by a hostile party
// does no more than its own node could, plus what the tokens it is shown
// allow.

// controlPrincipal is who a control request acts for.
type controlPrincipal struct {
	node   string // the member that sent it
	server bool   // the member is a server (or this agent)
	caller *caller
	// job is the job whose grant the member showed (nil: none): it holds
	// the job's work.
	job *moduleProof
}

// errNotAllowed refuses a control request.
var errNotAllowed = errors.New("fabric: not allowed")

type callerCtxKey struct{}

// withCallerToken makes the control requests made with ctx carry the
// API caller's token, for the leader to check.
func withCallerToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, callerCtxKey{}, token)
}

func callerToken(ctx context.Context) string {
	s, _ := ctx.Value(callerCtxKey{}).(string)
	return s
}

// principal returns who a request acts for; s is the leader's state.
func (a *Agent) principal(s *controlstate.State, origin string, req controlRequest) controlPrincipal {
	p := controlPrincipal{node: origin, server: origin == a.ID || a.isServerPeer(origin)}
	if req.Token != "" && wellFormedToken(req.Token) {
		if t, err := s.Authenticate(tokenHash(req.Token), nowMillis()); err == nil {
			p.caller = &caller{cluster: t.Tenant == "", token: t}
		}
	}
	return p
}

// provedJob returns the job whose grant a request shows, when the grant
// is the servers' (nil otherwise).
func (a *Agent) provedJob(req controlRequest) *moduleProof {
	var jp moduleProof
	if len(req.Proof) == 0 || wire.Unmarshal(req.Proof, &jp) != nil || a.grants.check(jp.Job, jp.Tenant, jp.Root, jp.Module, jp.Grant) != nil {
		return nil
	}
	return &jp
}

// worksFor reports whether the member showed the grant of a job of
// tenant's.
func (p controlPrincipal) worksFor(tenant string) bool {
	return p.job != nil && p.job.Tenant == tenant
}

// mayRead reports whether p may read the op's records at all; what each
// answer holds is filtered by seesJob.
func (p controlPrincipal) mayRead(op, id string) bool {
	if p.server || p.caller != nil && p.caller.cluster {
		return true
	}
	switch op {
	case "jobs", "job", "modules", "module", "name", "authenticate", "revoked", "deployments":
		return true // deployments: every ingress routes to every tenant's
	case "node":
		return id == p.node
	}
	return false
}

// seesJob reports whether p may see a job's record.
func (p controlPrincipal) seesJob(j controlstate.Job) bool {
	return p.server || j.Node == p.node || p.caller != nil && p.caller.sees(j)
}

// mayApply reports whether p may apply c to s, and why not.
func (p controlPrincipal) mayApply(s *controlstate.State, c controlstate.Command) error {
	if p.server || p.caller != nil && p.caller.cluster {
		return nil
	}
	if p.ownsChange(s, c) || p.caller != nil && p.caller.mayChange(s, c) {
		return nil
	}
	who := "node " + p.node
	if p.caller != nil {
		who += fmt.Sprintf(" for token %s of tenant %s", p.caller.token.ID, p.caller.token.Tenant)
	}
	return fmt.Errorf("%w: %s may not make this change to the control state (%s)", errNotAllowed, who, commandName(c))
}

// ownsChange reports whether the change is the member's own: about its
// drivers, its copies of modules, its actors' names.
func (p controlPrincipal) ownsChange(s *controlstate.State, c controlstate.Command) bool {
	jobHere := func(id string) bool {
		j, ok := s.Job(id)
		return ok && j.Node == p.node
	}
	switch {
	case c.Start != nil:
		return jobHere(c.Start.ID)
	case c.End != nil:
		return jobHere(c.End.ID)
	case c.AddModule != nil:
		m := c.AddModule
		_, known := s.Module(m.Digest)
		return m.Node == p.node && m.Copy && known
	case c.DeleteModule != nil:
		return c.DeleteModule.Node == p.node && c.DeleteModule.Tenant == ""
	case c.NameActor != nil:
		// Its own actor, for a tenant whose work it holds: a member cannot
		// take names in the namespaces of tenants it does not work for.
		return c.NameActor.Node == p.node && p.worksFor(c.NameActor.Tenant)
	case c.ScaleDeployment != nil:
		// An ingress wakes a deployment scaled to zero: to its least
		// above zero, nothing more.
		sc := c.ScaleDeployment
		d, ok := s.Deployment(sc.Key)
		return ok && d.Autoscaling != nil && d.Replicas == 0 && sc.Replicas == max(1, d.Autoscaling.MinReplicas) && sc.Version == d.Version
	case c.UnnameActor != nil:
		u := c.UnnameActor
		n, ok := s.Name(u.Group, u.Tenant, u.Namespace, u.Job, u.Name)
		return !ok || n.Node == p.node && bytes.Equal(n.Actor, u.Actor)
	}
	return false
}

// mayChange reports whether a tenant's token allows the change: its
// tenant's jobs and modules, by its role.
func (c caller) mayChange(s *controlstate.State, cmd controlstate.Command) bool {
	job := func(id string) (controlstate.Job, bool) { return s.Job(id) }
	switch {
	case cmd.PutDeployment != nil:
		d := cmd.PutDeployment.Deployment
		m, ok := s.Module(d.Digest)
		old, exists := s.Deployment(d.Key)
		return d.Tenant == c.token.Tenant && ok && c.seesModule(m) && (!exists || old.Tenant == d.Tenant)
	case cmd.DeleteDeployment != nil:
		d, ok := s.Deployment(cmd.DeleteDeployment.Key)
		return ok && d.Tenant == c.token.Tenant
	case cmd.Submit != nil:
		return cmd.Submit.Tenant == c.token.Tenant && cmd.Submit.Owner == c.token.ID
	case cmd.Stop != nil:
		j, ok := job(cmd.Stop.ID)
		return ok && c.manages(j)
	case cmd.Delete != nil:
		j, ok := job(cmd.Delete.ID)
		return ok && c.manages(j)
	case cmd.AddModule != nil:
		return cmd.AddModule.Tenant == c.token.Tenant && !cmd.AddModule.Copy
	case cmd.DeleteModule != nil:
		d := cmd.DeleteModule
		m, ok := s.Module(d.Digest)
		return d.Tenant == c.token.Tenant && d.Node == "" && ok && slices.Contains(m.Tenants, d.Tenant) && c.token.Role != controlstate.RoleUser
	}
	return false
}

// commandName names a command's change, for errors.
func commandName(c controlstate.Command) string {
	for _, f := range []struct {
		set  bool
		name string
	}{
		{c.Submit != nil, "submit"}, {c.Start != nil, "start"}, {c.End != nil, "end"}, {c.Stop != nil, "stop"},
		{c.Delete != nil, "delete"}, {c.Restart != nil, "restart"}, {c.AddModule != nil, "add module"},
		{c.DeleteModule != nil, "delete module"}, {c.NameActor != nil, "name actor"}, {c.UnnameActor != nil, "unname actor"},
		{c.ForgetNode != nil, "forget node"}, {c.CreateTenant != nil, "create tenant"}, {c.DeleteTenant != nil, "delete tenant"},
		{c.CreateToken != nil, "create token"}, {c.RevokeToken != nil, "revoke token"}, {c.SetQuota != nil, "set quota"},
		{c.CreateJoinToken != nil, "create join token"}, {c.UseJoinToken != nil, "use join token"},
		{c.DeleteJoinToken != nil, "delete join token"}, {c.AdmitNode != nil, "admit node"}, {c.RevokeNode != nil, "revoke node"},
		{c.AddTenantKey != nil, "add tenant key"}, {c.RemoveTenantKey != nil, "remove tenant key"},
		{c.PutDeployment != nil, "put deployment"}, {c.DeleteDeployment != nil, "delete deployment"},
		{c.ScaleDeployment != nil, "scale deployment"},
	} {
		if f.set {
			return f.name
		}
	}
	return "no change"
}
