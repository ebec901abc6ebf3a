package scheduler

import (
	"fmt"
	"strings"
	"testing"
)

// tenantOf reads the tenant from a task named "<tenant>-<job>-<n>".
func submitFor(c *Core, name string, demand Resources) {
	parts := strings.SplitN(name, "-", 3)
	c.Submit(Task{ID: tid(name), Demand: demand, Tenant: parts[0], Job: parts[1]})
}

// TestFairShareBetweenTenants: a tenant that submits after another's
// long queue is not served last: placements alternate by dominant share,
// and what is freed goes to the tenant that holds least.
func TestFairShareBetweenTenants(t *testing.T) {
	c := New()
	c.AddNode("n1", cpu(4), nil)
	for i := range 10 {
		submitFor(c, fmt.Sprintf("a-j1-%d", i), cpu(1))
	}
	for i := range 10 {
		submitFor(c, fmt.Sprintf("b-j2-%d", i), cpu(1))
	}
	mustPlace(t, c, "a-j1-0@n1", "b-j2-0@n1", "a-j1-1@n1", "b-j2-1@n1")
	// a's task ends: a holds least now, so a's next goes.
	c.Finished(tid("a-j1-0"))
	mustPlace(t, c, "a-j1-2@n1")
	// Two of b's end: b's next two go, not a's, until b holds as much.
	c.Finished(tid("b-j2-0"))
	c.Finished(tid("b-j2-1"))
	mustPlace(t, c, "b-j2-2@n1", "b-j2-3@n1")
}

// TestFairShareBetweenJobs: within one tenant, a job queued behind
// another's many tasks gets its share as soon as room frees.
func TestFairShareBetweenJobs(t *testing.T) {
	c := New()
	c.AddNode("n1", cpu(2), nil)
	for i := range 40 {
		submitFor(c, fmt.Sprintf("a-long-%d", i), cpu(1))
	}
	mustPlace(t, c, "a-long-0@n1", "a-long-1@n1")
	submitFor(c, "a-short-0", cpu(1))
	c.Finished(tid("a-long-0"))
	mustPlace(t, c, "a-short-0@n1")
}

// TestDominantShare: shares are by each tenant's dominant resource: a
// tenant holding a GPU (its dominant share: all the GPUs) waits while one
// holding only a little CPU runs more.
func TestDominantShare(t *testing.T) {
	c := New()
	c.AddNode("n1", Resources{CPU: Quantity(8), GPU: Quantity(1)}, nil)
	c.Submit(Task{ID: tid("g-1"), Demand: Resources{CPU: Quantity(1), GPU: Quantity(1)}, Tenant: "g", Job: "j"})
	c.Submit(Task{ID: tid("g-2"), Demand: cpu(1), Tenant: "g", Job: "j"})
	for i := range 3 {
		submitFor(c, fmt.Sprintf("c-j-%d", i), cpu(1))
	}
	mustPlace(t, c, "g-1@n1", "c-j-0@n1", "c-j-1@n1", "c-j-2@n1", "g-2@n1")
	if c.dominantShare(c.accounts[tenantKey("g")].used) != 1 || len(c.accounts) != 4 {
		t.Fatalf("g's share %v, %d accounts", c.dominantShare(c.accounts[tenantKey("g")].used), len(c.accounts))
	}
	for _, id := range []string{"g-1", "g-2", "c-j-0", "c-j-1", "c-j-2"} {
		c.Finished(tid(id))
	}
	if len(c.accounts) != 0 {
		t.Fatalf("%d accounts left with nothing running", len(c.accounts))
	}
}

// TestFairShareBlocked: a blocked task's CPU is not charged to its
// tenant while it waits, and is again once it runs.
func TestFairShareBlocked(t *testing.T) {
	c := New()
	c.AddNode("n1", cpu(2), nil)
	submitFor(c, "a-j-0", cpu(1))
	mustPlace(t, c, "a-j-0@n1")
	c.Blocked(tid("a-j-0"))
	if u := c.accounts[tenantKey("a")].used.CPU; u != 0 {
		t.Fatalf("blocked: a charged %d", u)
	}
	c.Unblocked(tid("a-j-0"))
	if u := c.accounts[tenantKey("a")].used.CPU; u != Quantity(1) {
		t.Fatalf("unblocked: a charged %d", u)
	}
	c.Blocked(tid("a-j-0"))
	c.Finished(tid("a-j-0"))
	if len(c.accounts) != 0 {
		t.Fatal("an account left after a blocked task finished")
	}
}

// TestAccountsConsistent: after any mix of submissions, placements,
// blocks, leases, handoffs, cancels, ends and a node's loss, each
// account holds exactly what its charged tasks hold, and an account with
// nothing running or queued is gone.
func TestAccountsConsistent(t *testing.T) {
	c := New()
	c.AddNode("n1", cpu(3), nil)
	c.AddNode("n2", cpu(2), nil)
	rng := uint64(1)
	next := func(n int) int { rng = rng*6364136223846793005 + 1442695040888963407; return int(rng>>33) % n }
	var running []TaskID
	for i := range 2000 {
		switch op := next(8); {
		case op < 3:
			name := fmt.Sprintf("%c-j%d-%d", 'a'+next(3), next(3), i)
			submitFor(c, name, cpu(float64(1+next(2))/2))
		case op == 3:
			for _, p := range c.Schedule().Placements {
				running = append(running, p.Task)
			}
		case op == 4 && len(running) > 0:
			id := running[next(len(running))]
			if next(2) == 0 {
				c.Blocked(id)
			} else {
				c.Unblocked(id)
			}
		case op == 5 && len(running) > 0:
			k := next(len(running))
			id := running[k]
			if leased := c.Lease(id, 1, func(TaskID) bool { return true }); len(leased) == 1 && c.Handoff(id, leased[0]) {
				running[k] = leased[0]
			}
		case op == 6 && len(running) > 0:
			k := next(len(running))
			c.Finished(running[k])
			running = append(running[:k], running[k+1:]...)
		case op == 7 && i%500 == 0:
			for _, id := range c.RemoveNode("n2") {
				for k, r := range running {
					if r == id {
						running = append(running[:k], running[k+1:]...)
						break
					}
				}
			}
			c.AddNode("n2", cpu(2), nil)
		}
		want := map[string]Resources{}
		for _, ts := range c.tasks {
			if ts.charged {
				for _, k := range ts.accountKeysForTest() {
					want[k] = want[k].Add(ts.held())
				}
			}
		}
		for k, a := range c.accounts {
			if a.used.String() != want[k].String() {
				t.Fatalf("step %d: account %q holds %v, its tasks %v", i, k, a.used, want[k])
			}
			if a.tasks <= 0 && a.queued <= 0 {
				t.Fatalf("step %d: account %q kept with nothing running or queued", i, k)
			}
		}
		for k, w := range want {
			if _, ok := c.accounts[k]; !ok && !w.IsZero() {
				t.Fatalf("step %d: account %q missing, its tasks hold %v", i, k, w)
			}
		}
	}
}

func (ts *taskState) accountKeysForTest() [2]string {
	return [2]string{tenantKey(ts.t.Tenant), jobKey(ts.t.Tenant, ts.t.Job)}
}

// TestAllowance: a tenant's tasks wait while it holds its allowance, and
// go once it holds less; a task that asks more than the whole quota is
// infeasible, saying so; another tenant is not held back.
func TestAllowance(t *testing.T) {
	c := New()
	c.AddNode("n1", cpu(8), nil)
	c.SetAllowances(map[string]Allowance{"a": {CPU: Quantity(2), GPU: -1, Memory: -1, Tasks: -1,
		Quota: Quota{CPU: Quantity(3), GPU: -1, Memory: -1, Tasks: -1}}})
	for i := range 4 {
		submitFor(c, fmt.Sprintf("a-j-%d", i), cpu(1))
	}
	submitFor(c, "b-j-0", cpu(1))
	submitFor(c, "a-big-0", cpu(4))
	p := c.Schedule()
	if got := place(p); fmt.Sprint(got) != "[a-j-0@n1 b-j-0@n1 a-j-1@n1]" {
		t.Fatalf("placements %v", got)
	}
	if len(p.Infeasible) != 1 || p.Infeasible[0].Task != tid("a-big-0") || !strings.Contains(p.Infeasible[0].Reason, "past tenant a's quota of 3 CPUs") {
		t.Fatalf("infeasible %+v", p.Infeasible)
	}
	mustPlace(t, c)
	c.Finished(tid("a-j-0"))
	mustPlace(t, c, "a-j-2@n1")
	if u := c.Usage(); u["a"].Tasks != 2 || u["a"].Held.CPU != Quantity(2) || u["b"].Tasks != 1 {
		t.Fatalf("usage %+v", u)
	}
	// A larger allowance lets the rest go.
	c.SetAllowances(nil)
	mustPlace(t, c, "a-j-3@n1")
}

// TestActorAllowance: a tenant's bound on actors holds its actors'
// creations back, not its tasks; a quota of no actors makes an actor
// infeasible, naming it.
func TestActorAllowance(t *testing.T) {
	c := New()
	c.AddNode("n1", cpu(8), nil)
	c.SetAllowances(map[string]Allowance{"a": {CPU: -1, GPU: -1, Memory: -1, Tasks: -1, Actors: 1,
		Quota: Quota{CPU: -1, GPU: -1, Memory: -1, Tasks: -1, Actors: 1}},
		"z": {CPU: -1, GPU: -1, Memory: -1, Tasks: -1, Actors: 0, Quota: Quota{CPU: -1, GPU: -1, Memory: -1, Tasks: -1, Actors: 0}}})
	for i := range 2 {
		c.Submit(Task{ID: tid(fmt.Sprintf("a-actor-%d", i)), Demand: cpu(1), Tenant: "a", Job: "j", Actor: true})
	}
	submitFor(c, "a-j-0", cpu(1))
	c.Submit(Task{ID: tid("z-actor-0"), Tenant: "z", Job: "j", Actor: true})
	p := c.Schedule()
	if got := place(p); fmt.Sprint(got) != "[a-actor-0@n1 a-j-0@n1]" {
		t.Fatalf("placements %v", got)
	}
	if len(p.Infeasible) != 1 || p.Infeasible[0].Task != tid("z-actor-0") || !strings.Contains(p.Infeasible[0].Reason, "tenant z's quota allows no actors") {
		t.Fatalf("infeasible %+v", p.Infeasible)
	}
	if u := c.Usage(); u["a"].Actors != 1 || u["a"].Tasks != 2 {
		t.Fatalf("usage %+v", u)
	}
	c.Finished(tid("a-actor-0"))
	mustPlace(t, c, "a-actor-1@n1")
}
