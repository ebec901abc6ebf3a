package scheduler

import "fmt"

// Fair sharing. Each running task that holds resources (placed and not
// leased behind another) is charged to its tenant's account and to its
// job's. A class of queued tasks is ordered by its tenant's dominant share
// (the largest fraction, over every resource, of the nodes' total that
// the tenant's tasks hold), then its job's, then by when its job was last
// served (longest ago first), then by the submission order of its head
// task. So a tenant that holds little goes before one that holds much,
// whatever they submitted first; within a tenant a job behind another's
// long queue takes turns with it; and a reservation is not leased on to a
// job's next task while another job comes first. That is dominant-resource
// fairness (Ghodsi et al., NSDI 2011) among the tasks this Core places.

// tenantKey and jobKey name accounts.
func tenantKey(tenant string) string   { return "t\x00" + tenant }
func jobKey(tenant, job string) string { return "j\x00" + tenant + "\x00" + job }

// account returns the account named key, making it.
func (c *Core) account(key string) *account {
	a := c.accounts[key]
	if a == nil {
		a = &account{key: key}
		c.accounts[key] = a
	}
	return a
}

// maybeDrop forgets an account with nothing running and nothing queued.
func (c *Core) maybeDrop(a *account) {
	if a != nil && a.tasks <= 0 && a.queued <= 0 && c.accounts[a.key] == a {
		delete(c.accounts, a.key)
	}
}

// held is what a running task holds: its demand, less its CPU while it
// is blocked.
func (ts *taskState) held() Resources {
	d := ts.t.Demand
	if ts.blocked {
		d.CPU = 0
	}
	return d
}

// accountsOf returns a task's tenant's and job's accounts: its class's
// when it has them (no lookup), else by name.
func (c *Core) accountsOf(ts *taskState, cl *class) [2]*account {
	if cl != nil && cl.tenant != nil && c.accounts[cl.tenant.key] == cl.tenant && c.accounts[cl.job.key] == cl.job {
		return [2]*account{cl.tenant, cl.job}
	}
	return [2]*account{c.account(tenantKey(ts.t.Tenant)), c.account(jobKey(ts.t.Tenant, ts.t.Job))}
}

// charge adds a placed task's holding to its tenant and job (cl: the
// class it came from, nil when unknown).
func (c *Core) charge(ts *taskState, cl *class) {
	if ts.charged || ts.leased || ts.t.Uncharged {
		return
	}
	ts.charged = true
	ts.accts = c.accountsOf(ts, cl)
	d := ts.held()
	for _, a := range ts.accts {
		a.used = a.used.Add(d)
		a.tasks++
		if !ts.t.Forwarded {
			a.own = a.own.Add(d)
			a.ownTasks++
			if ts.t.Actor {
				a.ownActors++
			}
		}
	}
}

// uncharge gives a task's charge back.
func (c *Core) uncharge(ts *taskState) {
	if !ts.charged {
		return
	}
	ts.charged = false
	d := ts.held()
	for _, a := range ts.accts {
		a.used = a.used.Sub(d)
		a.tasks--
		if !ts.t.Forwarded {
			a.own = a.own.Sub(d)
			a.ownTasks--
			if ts.t.Actor {
				a.ownActors--
			}
		}
		c.maybeDrop(a)
	}
	ts.accts = [2]*account{}
}

// chargeCPU moves a charged task's CPU in or out of its accounts (it
// blocked, or runs again).
func (c *Core) chargeCPU(ts *taskState, cpu int64) {
	if !ts.charged {
		return
	}
	for _, a := range ts.accts {
		a.used.CPU += cpu
		if !ts.t.Forwarded {
			a.own.CPU += cpu
		}
	}
}

// queuedIn counts a task into its class's accounts' queues.
func (c *Core) queuedIn(cl *class, ts *taskState) {
	if cl.tenant == nil || c.accounts[cl.tenant.key] != cl.tenant || c.accounts[cl.job.key] != cl.job {
		cl.tenant, cl.job = c.account(tenantKey(ts.t.Tenant)), c.account(jobKey(ts.t.Tenant, ts.t.Job))
	}
	cl.tenant.queued++
	cl.job.queued++
}

// dequeued counts a task out of its class's accounts' queues.
func (c *Core) dequeued(cl *class) {
	if cl.tenant == nil {
		return
	}
	cl.tenant.queued--
	cl.job.queued--
	c.maybeDrop(cl.tenant)
	c.maybeDrop(cl.job)
}

// refreshShares recomputes a class's shares; it reports whether they
// grew since last.
func (c *Core) refreshShares(cl *class) bool {
	if cl.tenant == nil {
		return false
	}
	t, j := c.dominantShare(cl.tenant.used), c.dominantShare(cl.job.used)
	grew := t > cl.tshare || j > cl.jshare || cl.job.served > cl.served
	cl.tshare, cl.jshare, cl.served = t, j, cl.job.served
	return grew
}

// dominantShare is the largest fraction of the nodes' total that used
// holds, over every resource.
func (c *Core) dominantShare(used Resources) float64 {
	if c.totalGen != c.nodesGen {
		c.total = Resources{}
		for _, n := range c.nodes {
			c.total = c.total.Add(n.total)
		}
		c.totalGen = c.nodesGen
	}
	share := 0.0
	frac := func(u, t int64) {
		if u > 0 && t > 0 {
			share = max(share, float64(u)/float64(t))
		}
	}
	frac(used.CPU, c.total.CPU)
	frac(used.Memory, c.total.Memory)
	frac(used.GPU, c.total.GPU)
	for k, u := range used.Custom {
		frac(u, c.total.Custom[k])
	}
	return share
}

// othersFirst reports whether another job's queued tasks come before
// cl's by fair share: then a reservation of cl's job is not leased on to
// cl's next task, but freed for Schedule to give.
func (c *Core) othersFirst(cl *class) bool {
	if len(c.classes) < 2 || cl.tenant == nil {
		return false
	}
	c.refreshShares(cl)
	for _, o := range c.classes {
		if o.job == cl.job || o.tenant == nil || len(o.queue) == 0 {
			continue
		}
		c.refreshShares(o)
		if o.tshare < cl.tshare || o.tshare == cl.tshare && (o.jshare < cl.jshare || o.jshare == cl.jshare && o.job.served < cl.job.served) {
			return true
		}
	}
	return false
}

// Allowance bounds what one tenant's tasks placed by this Core may hold
// at once: the tenant's quota less what it holds elsewhere in the
// cluster. A negative field is no bound.
type Allowance struct {
	CPU, GPU, Memory int64
	Tasks, Actors    int
	// Quota is the tenant's whole quota, in the same fields: a task that
	// asks more than it alone is infeasible, and the message says why.
	Quota Quota
}

// Quota is a tenant's whole quota (negative fields: no bound).
type Quota struct {
	CPU, GPU, Memory int64
	Tasks, Actors    int
}

// SetAllowances replaces the tenants' allowances (tenants not named have
// no bound). Tasks already placed stay; what is queued past an allowance
// waits until the tenant holds less.
func (c *Core) SetAllowances(a map[string]Allowance) {
	c.allowances = a
	c.nodesGen++ // feasibility may change with the quotas
}

// TenantUsage is what a tenant's tasks placed by this Core hold, and
// what its tasks queued here ask.
type TenantUsage struct {
	Held          Resources
	Tasks, Actors int
	Queued        Resources
}

// Usage returns what each tenant's tasks that this Core placed itself
// (not Forwarded to it) hold, wherever they run: what counts against the
// tenant's quota here (only tenants that hold something).
func (c *Core) Usage() map[string]TenantUsage {
	out := map[string]TenantUsage{}
	for k, a := range c.accounts {
		if len(k) > 2 && k[0] == 't' && a.ownTasks > 0 {
			out[k[2:]] = TenantUsage{Held: a.own, Tasks: a.ownTasks, Actors: a.ownActors}
		}
	}
	for _, cl := range c.classes {
		if cl.tenant == nil || cl.forwarded || cl.uncharged || len(cl.queue) == 0 {
			continue
		}
		tenant := cl.tenant.key[2:]
		u := out[tenant]
		n := int64(min(len(cl.queue), 1<<16))
		d := cl.demand
		u.Queued = u.Queued.Add(Resources{CPU: d.CPU * n, GPU: d.GPU * n, Memory: min(d.Memory, 1<<40) * n})
		out[tenant] = u
	}
	return out
}

// overAllowance reports whether placing one more of cl's tasks would take
// its tenant past its allowance.
func (c *Core) overAllowance(cl *class) bool {
	if len(c.allowances) == 0 || cl.tenant == nil || cl.forwarded || cl.uncharged {
		return false // a forwarded task was held to the quota where it was placed
	}
	al, ok := c.allowances[cl.tenant.key[2:]]
	if !ok {
		return false
	}
	u, d := cl.tenant.own, cl.demand
	over := func(used, dem, lim int64) bool { return lim >= 0 && dem > 0 && used+dem > lim }
	return over(u.CPU, d.CPU, al.CPU) || over(u.GPU, d.GPU, al.GPU) || over(u.Memory, d.Memory, al.Memory) ||
		al.Tasks >= 0 && cl.tenant.ownTasks+1 > al.Tasks || cl.actor && al.Actors >= 0 && cl.tenant.ownActors+1 > al.Actors
}

// pastQuota says why a class's tasks can never run under their tenant's
// quota ("" when they can).
func (c *Core) pastQuota(cl *class) string {
	if len(c.allowances) == 0 || cl.tenant == nil || cl.forwarded || cl.uncharged {
		return ""
	}
	tenant := cl.tenant.key[2:]
	al, ok := c.allowances[tenant]
	if !ok {
		return ""
	}
	q, d := al.Quota, cl.demand
	switch {
	case q.CPU >= 0 && d.CPU > q.CPU:
		return fmt.Sprintf("the task asks %v CPU, past tenant %s's quota of %v CPUs", float64(d.CPU)/Unit, tenant, float64(q.CPU)/Unit)
	case q.GPU >= 0 && d.GPU > q.GPU:
		return fmt.Sprintf("the task asks %v GPU, past tenant %s's quota of %v GPUs", float64(d.GPU)/Unit, tenant, float64(q.GPU)/Unit)
	case q.Memory >= 0 && d.Memory > q.Memory:
		return fmt.Sprintf("the task asks %d bytes of memory, past tenant %s's quota of %d", d.Memory, tenant, q.Memory)
	case q.Tasks == 0:
		return fmt.Sprintf("tenant %s's quota allows no running tasks", tenant)
	case cl.actor && q.Actors == 0:
		return fmt.Sprintf("tenant %s's quota allows no actors", tenant)
	}
	return ""
}
