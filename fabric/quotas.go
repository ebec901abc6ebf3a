//go:build linux

package fabric

import (
	"context"
	"sync"
	"time"

	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/core"
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

// allowances records origin's report and returns origin's allowances.
func (r *quotaReports) allowances(origin string, usage map[string]scheduler.TenantUsage, quotas map[string]controlstate.Quota, now time.Time) map[string]scheduler.Allowance {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nodes == nil {
		r.nodes = map[string]quotaReport{}
	}
	r.nodes[origin] = quotaReport{at: now, usage: usage}
	out := make(map[string]scheduler.Allowance, len(quotas))
	for tenant, q := range quotas {
		var elsewhere scheduler.TenantUsage
		for node, rep := range r.nodes {
			if now.Sub(rep.at) > reportStale {
				delete(r.nodes, node)
				continue
			}
			if u, ok := rep.usage[tenant]; ok && node != origin {
				elsewhere.Held = elsewhere.Held.Add(u.Held)
				elsewhere.Tasks += u.Tasks
			}
		}
		whole := schedulerQuota(q)
		left := func(limit, used int64) int64 {
			if limit < 0 {
				return -1
			}
			return max(0, limit-used)
		}
		al := scheduler.Allowance{CPU: left(whole.CPU, elsewhere.Held.CPU), GPU: left(whole.GPU, elsewhere.Held.GPU),
			Memory: left(whole.Memory, elsewhere.Held.Memory), Tasks: -1, Quota: whole}
		if whole.Tasks >= 0 {
			al.Tasks = max(0, whole.Tasks-elsewhere.Tasks)
		}
		out[tenant] = al
	}
	return out
}

// schedulerQuota is a quota as the scheduler bounds it: 0 is no bound.
func schedulerQuota(q controlstate.Quota) scheduler.Quota {
	bound := func(v int64) int64 {
		if v == 0 {
			return -1
		}
		return v
	}
	out := scheduler.Quota{CPU: bound(q.CPU), GPU: bound(q.GPU), Memory: bound(q.Memory), Tasks: -1}
	if q.Tasks != 0 {
		out.Tasks = int(q.Tasks)
	}
	return out
}

// quotaInterval is how often an agent reports its tenants' usage.
func (a *Agent) quotaInterval() time.Duration {
	if a.cfg.Timing.ProbeInterval > 0 && a.cfg.Timing.ProbeInterval < 500*time.Millisecond {
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
		var al map[string]scheduler.Allowance
		if wire.Unmarshal(ans.Grant, &al) == nil {
			a.node.step(core.Allowances{Tenants: al})
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
	al := a.quotas.allowances(origin, usage, s.Quotas(), time.Now())
	return controlAnswer{Grant: mustMarshal(al)}, nil
}
