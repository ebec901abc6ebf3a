//go:build linux

package fabric

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/core"
	"github.com/wasmfabric/fabric/internal/membership"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/scheduler"
	"github.com/wasmfabric/fabric/internal/wire"
)

// Quotas on what runs. A tenant's quota bounds the CPUs, GPUs, memory and
// running tasks its tasks and actors hold across the cluster. Each agent
// reports to the leader, every second, what each tenant's tasks that its
// scheduler placed hold, wherever they run (control op "usage"; a task
// another node placed here counts there, not here). The leader keeps the
// reports in memory and answers each with the node's allowances: each
// tenant's quota less what the other nodes last said they placed for it.
// The node's scheduler places no task that would take a tenant past its
// allowance: the task waits, and goes once the tenant holds less; a task
// that asks more than the whole quota fails at once, naming the quota. A
// tenant may briefly hold more than its quota while reports travel (for a
// second at most, on nodes that place its work at the same time); nothing
// it submitted is lost.
//
// The answer also carries each tenant's bounds on its objects on every
// node (ObjectStore, Spill), which the node's store enforces: a put past
// them fails, naming the quota.
//
// The same reports give fair shares between schedulers: each report also
// says what each tenant has queued, and when the tenants' needs (what they
// hold and have queued) are more than the cluster holds, the leader
// divides it by dominant-resource fairness (fairCaps) and bounds each
// tenant's allowance by its share too. So two tenants whose work different
// nodes place get half the cluster each, as two whose work one node places
// do by that node's scheduler alone.

// quotaReports are the leader's latest usage report of each node.
type quotaReports struct {
	mu    sync.Mutex
	nodes map[string]quotaReport
}

type quotaReport struct {
	at    time.Time
	usage map[string]scheduler.TenantUsage
}

// reportStale is how old a node's report may be before it no longer
// counts (its node is gone, or silent).
const reportStale = 10 * time.Second

// allowances records origin's report and returns origin's allowances:
// for each tenant with a quota, the quota less what the other nodes
// placed for it; and, when the cluster is contended (the tenants' needs,
// what they hold and have queued, are more than it holds), each tenant's
// fair share of capacity by dominant-resource fairness, less what the
// other nodes placed for it. Capacity is the alive nodes' total.
func (r *quotaReports) allowances(origin string, usage map[string]scheduler.TenantUsage, quotas map[string]controlstate.Quota, capacity scheduler.Resources, now time.Time) map[string]scheduler.Allowance {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nodes == nil {
		r.nodes = map[string]quotaReport{}
	}
	r.nodes[origin] = quotaReport{at: now, usage: usage}
	elsewhere := map[string]scheduler.TenantUsage{}
	need := map[string]scheduler.Resources{}
	for node, rep := range r.nodes {
		if now.Sub(rep.at) > reportStale {
			delete(r.nodes, node)
			continue
		}
		for tenant, u := range rep.usage {
			need[tenant] = need[tenant].Add(u.Held).Add(u.Queued)
			if node != origin {
				e := elsewhere[tenant]
				e.Held = e.Held.Add(u.Held)
				e.Tasks += u.Tasks
				e.Actors += u.Actors
				elsewhere[tenant] = e
			}
		}
	}
	caps := fairCaps(need, capacity)
	out := make(map[string]scheduler.Allowance, len(quotas)+len(caps))
	left := func(limit, used int64) int64 {
		if limit < 0 {
			return -1
		}
		return max(0, limit-used)
	}
	bound := func(a, b int64) int64 { // the tighter of two bounds (-1: none)
		switch {
		case a < 0:
			return b
		case b < 0:
			return a
		}
		return min(a, b)
	}
	for tenant := range mergeKeys(quotas, caps) {
		whole := scheduler.Quota{CPU: -1, GPU: -1, Memory: -1, Tasks: -1, Actors: -1}
		if q, ok := quotas[tenant]; ok {
			whole = schedulerQuota(q)
		}
		limit := whole
		if c, ok := caps[tenant]; ok {
			limit.CPU, limit.GPU, limit.Memory = bound(limit.CPU, c.CPU), bound(limit.GPU, c.GPU), bound(limit.Memory, c.Memory)
		}
		e := elsewhere[tenant]
		al := scheduler.Allowance{CPU: left(limit.CPU, e.Held.CPU), GPU: left(limit.GPU, e.Held.GPU),
			Memory: left(limit.Memory, e.Held.Memory), Tasks: -1, Actors: -1, Quota: whole}
		if whole.Tasks >= 0 {
			al.Tasks = max(0, whole.Tasks-e.Tasks)
		}
		if whole.Actors >= 0 {
			al.Actors = max(0, whole.Actors-e.Actors)
		}
		out[tenant] = al
	}
	return out
}

func mergeKeys(q map[string]controlstate.Quota, c map[string]scheduler.Quota) map[string]struct{} {
	out := make(map[string]struct{}, len(q)+len(c))
	for k := range q {
		out[k] = struct{}{}
	}
	for k := range c {
		out[k] = struct{}{}
	}
	return out
}

// fairCaps divides a contended cluster between the tenants that need it,
// by dominant-resource fairness with progressive filling: each tenant's
// dominant share is its need's largest fraction of capacity; the tenants
// that need less than an equal share get their need, and the rest share
// what is left equally. It returns each capped tenant's bound on every
// resource (its share of capacity), or nothing when the needs fit.
func fairCaps(need map[string]scheduler.Resources, capacity scheduler.Resources) map[string]scheduler.Quota {
	type tenantNeed struct {
		name  string
		share float64
	}
	var needs []tenantNeed
	total := 0.0
	for t, n := range need {
		d := dominant(n, capacity)
		if d > 0 {
			needs = append(needs, tenantNeed{t, d})
			total += d
		}
	}
	if len(needs) < 2 || total <= 1 {
		return nil
	}
	slices.SortFunc(needs, func(a, b tenantNeed) int { return cmp.Compare(a.share, b.share) })
	level, rest := 1.0, 1.0
	for i, n := range needs {
		if k := float64(len(needs) - i); n.share*k >= rest {
			level = rest / k
			break
		}
		rest -= n.share
	}
	out := map[string]scheduler.Quota{}
	for _, n := range needs {
		s := min(n.share, level)
		out[n.name] = scheduler.Quota{CPU: int64(s * float64(capacity.CPU)), GPU: int64(s * float64(capacity.GPU)),
			Memory: int64(s * float64(capacity.Memory)), Tasks: -1, Actors: -1}
	}
	return out
}

// dominant is the largest fraction of capacity that r is, over CPU, GPU
// and memory.
func dominant(r, capacity scheduler.Resources) float64 {
	d := 0.0
	for _, p := range [][2]int64{{r.CPU, capacity.CPU}, {r.GPU, capacity.GPU}, {r.Memory, capacity.Memory}} {
		if p[0] > 0 && p[1] > 0 {
			d = max(d, float64(p[0])/float64(p[1]))
		}
	}
	return d
}

// schedulerQuota is a quota as the scheduler bounds it: 0 is no bound.
func schedulerQuota(q controlstate.Quota) scheduler.Quota {
	bound := func(v int64) int64 {
		if v == 0 {
			return -1
		}
		return v
	}
	out := scheduler.Quota{CPU: bound(q.CPU), GPU: bound(q.GPU), Memory: bound(q.Memory), Tasks: -1, Actors: -1}
	if q.Tasks != 0 {
		out.Tasks = int(q.Tasks)
	}
	if q.Actors != 0 {
		out.Actors = int(q.Actors)
	}
	return out
}

// quotaInterval is how often an agent reports its tenants' usage.
func (a *Agent) quotaInterval() time.Duration {
	if a.fastTiming() {
		return 250 * time.Millisecond
	}
	return time.Second
}

// reportUsage keeps the node's allowances current.
func (a *Agent) reportUsage() {
	defer a.wg.Done()
	t := time.NewTicker(a.quotaInterval())
	defer t.Stop()
	for {
		select {
		case <-a.done:
			return
		case <-t.C:
		}
		a.node.mu.Lock()
		usage := a.node.core.TenantUsage()
		a.node.mu.Unlock()
		ctx, cancel := context.WithTimeout(a.agentCtx, controlTimeout)
		ans, err := a.control(ctx, controlRequest{Op: "usage", Command: mustMarshal(usage)})
		cancel()
		if err != nil {
			continue // the last allowances hold
		}
		var u usageReply
		if wire.Unmarshal(ans.Grant, &u) == nil {
			a.node.step(core.Allowances{Tenants: u.Allowances})
			a.node.store.SetLimits(u.Store)
			mem := make(map[string]int64, len(u.Allowances))
			for tenant, al := range u.Allowances {
				mem[tenant] = al.Quota.Memory
			}
			a.node.SetTenantMemoryQuotas(mem)
		}
	}
}

// usageAnswer records a member's usage report on the leader and answers
// its allowances.
func (a *Agent) usageAnswer(s *controlstate.State, origin string, req controlRequest) (controlAnswer, error) {
	var usage map[string]scheduler.TenantUsage
	if err := wire.Unmarshal(req.Command, &usage); err != nil {
		return controlAnswer{}, err
	}
	if len(usage) > controlstate.MaxTenants+1 {
		usage = nil // more tenants than there can be: not a report
	}
	var capacity scheduler.Resources
	a.tableMu.RLock()
	for _, m := range a.table {
		if m.Status == membership.Alive && !a.isRevoked(m.ID) {
			capacity = capacity.Add(resources(m.Resources))
		}
	}
	a.tableMu.RUnlock()
	quotas := s.Quotas()
	u := usageReply{Allowances: a.quotas.allowances(origin, usage, quotas, capacity, time.Now())}
	for tenant, q := range quotas {
		if q.ObjectStore != 0 || q.Spill != 0 {
			if u.Store == nil {
				u.Store = map[string]objects.Limit{}
			}
			u.Store[tenant] = objects.Limit{Held: q.ObjectStore, Spill: q.Spill}
		}
	}
	return controlAnswer{Grant: mustMarshal(u)}, nil
}

// usageReply answers a usage report: the node's allowances, and the
// bounds on each tenant's objects in its store.
type usageReply struct {
	Allowances map[string]scheduler.Allowance `cbor:"1,keyasint,omitempty"`
	Store      map[string]objects.Limit       `cbor:"2,keyasint,omitempty"`
}
