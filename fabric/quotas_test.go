//go:build linux

package fabric

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/scheduler"
)

// TestAllowances: the leader gives each node its tenants' quotas less
// what the other nodes last said they hold; a silent node's report stops
// counting; a tenant with no quota on what runs gets no bound.
func TestAllowances(t *testing.T) {
	var r quotaReports
	now := time.Unix(1000, 0)
	quotas := map[string]controlstate.Quota{"acme": {CPU: scheduler.Quantity(4), Tasks: 5}}
	use := func(cpu float64, tasks int) map[string]scheduler.TenantUsage {
		return map[string]scheduler.TenantUsage{"acme": {Held: scheduler.Resources{CPU: scheduler.Quantity(cpu)}, Tasks: tasks}}
	}
	r.allowances("n1", use(3, 3), quotas, scheduler.Resources{}, now)
	al := r.allowances("n2", use(0.5, 1), quotas, scheduler.Resources{}, now.Add(time.Second))
	got := al["acme"]
	if got.CPU != scheduler.Quantity(1) || got.Tasks != 2 || got.GPU != -1 || got.Memory != -1 || got.Quota.CPU != scheduler.Quantity(4) || got.Quota.Tasks != 5 {
		t.Fatalf("n2's allowance: %+v", got)
	}
	// n1 holds more than the quota leaves: n2 gets nothing, not less.
	r.allowances("n1", use(5, 3), quotas, scheduler.Resources{}, now.Add(2*time.Second))
	if got := r.allowances("n2", nil, quotas, scheduler.Resources{}, now.Add(2*time.Second))["acme"]; got.CPU != 0 {
		t.Fatalf("past the quota elsewhere: %+v", got)
	}
	// n1 falls silent: its report stops counting.
	if got := r.allowances("n2", nil, quotas, scheduler.Resources{}, now.Add(2*time.Second+reportStale+time.Second))["acme"]; got.CPU != scheduler.Quantity(4) || got.Tasks != 5 {
		t.Fatalf("after n1's report went stale: %+v", got)
	}
	if _, ok := r.allowances("n2", nil, map[string]controlstate.Quota{}, scheduler.Resources{}, now)["acme"]; ok {
		t.Fatal("a tenant with no quota got an allowance")
	}
}

// TestTenantQuotaRuns: a tenant's quota on CPUs bounds how many of its
// one-CPU tasks run at once across a two-node cluster, while the
// operator's run side by side; a task that asks more than the whole
// quota fails at once, naming it; a larger quota lets more run.
func TestTenantQuotaRuns(t *testing.T) {
	a := startJobsAgent(t, nil)
	b := joinAgent(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := a.Client(a.APIToken())
	if _, err := admin.CreateTenantWith(ctx, TenantInfo{Name: "acme", MaxCPUs: 1}); err != nil {
		t.Fatal(err)
	}
	nt, err := admin.CreateToken(ctx, TokenRequest{Tenant: "acme", Role: "user"})
	if err != nil {
		t.Fatal(err)
	}
	acme := a.Client(nt.Token)
	// The quota reaches both nodes with their next usage reports.
	waitReports := func() {
		since := time.Now()
		waitFor(t, 10*time.Second, "both nodes reported since the quota changed", func() bool {
			a.quotas.mu.Lock()
			defer a.quotas.mu.Unlock()
			return len(a.quotas.nodes) == 2 && a.quotas.nodes[a.ID].at.After(since) && a.quotas.nodes[b.ID].at.After(since)
		})
	}
	waitReports()
	hostile := guestBytes(t, "internal/testguests/hostile")
	overlap := func(cl *Client) string {
		t.Helper()
		var out strings.Builder
		if err := cl.Submit(ctx, hostile, []string{"overlap", "4", "400"}, &out); err != nil {
			t.Fatalf("overlap: %v\n%s", err, out.String())
		}
		return out.String()
	}
	if out := overlap(acme); !strings.Contains(out, "at most 1 at once") {
		t.Errorf("acme under a quota of 1 CPU: %q", out)
	}
	if out := overlap(admin); strings.Contains(out, "at most 1 at once") {
		t.Errorf("the operator, with no quota: %q", out)
	}
	if _, err := admin.SetQuota(ctx, TenantInfo{Name: "acme", MaxCPUs: 0.5}); err != nil {
		t.Fatal(err)
	}
	waitReports()
	var out strings.Builder
	err = acme.Submit(ctx, hostile, []string{"overlap", "1", "10"}, &out)
	if err == nil || !strings.Contains(err.Error()+out.String(), "past tenant acme's quota of 0.5 CPUs") {
		t.Errorf("a task past the whole quota: %v\n%s", err, out.String())
	}
	if _, err := admin.SetQuota(ctx, TenantInfo{Name: "acme", MaxCPUs: 2}); err != nil {
		t.Fatal(err)
	}
	waitReports()
	if out := overlap(acme); !strings.Contains(out, "at most 2 at once") {
		t.Errorf("acme under a quota of 2 CPUs: %q", out)
	}
}

// TestFairShareAcrossTenants: two tenants flood a three-node cluster
// with the same work, one a little after the other; while both have work
// waiting, each gets its share of the CPUs: within 10% of half the CPU
// time each. Through one agent, its scheduler shares between them;
// through two, each placing its own tenant's work, the leader's fair
// allowances do.
func TestFairShareAcrossTenants(t *testing.T) {
	for _, two := range []bool{false, true} {
		name := map[bool]string{false: "one agent", true: "two agents"}[two]
		t.Run(name, func(t *testing.T) { fairShareAcrossTenants(t, two) })
	}
}

func fairShareAcrossTenants(t *testing.T, twoAgents bool) {
	a := startJobsAgent(t, nil)
	var others []*Agent
	for range 2 {
		cfg := jobsAgentConfig(t, nil)
		cfg.Token = joinToken(t, a)
		o, err := StartAgent(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		others = append(others, o)
	}
	waitFor(t, 15*time.Second, "three members", func() bool { return a.node.NodeCount() == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := a.Client(a.APIToken())
	clients := map[string]*Client{}
	for _, name := range []string{"acme", "globex"} {
		if _, err := admin.CreateTenant(ctx, name); err != nil {
			t.Fatal(err)
		}
		nt, err := admin.CreateToken(ctx, TokenRequest{Tenant: name, Role: "user"})
		if err != nil {
			t.Fatal(err)
		}
		clients[name] = a.Client(nt.Token)
	}
	if twoAgents {
		clients["globex"] = others[0].Client(clients["globex"].Token) // another agent's scheduler places globex's work
	}
	hostile := guestBytes(t, "internal/testguests/hostile")
	// The module is copied to and compiled on every node first, so that
	// what the floods measure is the scheduler's division of the CPUs,
	// not which tenant paid for the copies and compilations (under load,
	// seconds): twelve one-CPU tasks fill the three nodes' six CPUs.
	digest := ModuleDigest(hostile)
	for round := 0; !a.node.HasModule(digest) || !others[0].node.HasModule(digest) || !others[1].node.HasModule(digest); round++ {
		if round == 5 {
			t.Fatal("five rounds of twelve tasks left a node without the module")
		}
		var warm strings.Builder
		if err := admin.Submit(ctx, hostile, []string{"overlap", "12", "400"}, &warm); err != nil {
			t.Fatalf("warming the nodes: %v\n%s", err, warm.String())
		}
	}
	spans := map[string][][2]int64{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range []string{"acme", "globex"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out strings.Builder
			if err := clients[name].Submit(ctx, hostile, []string{"overlap", "60", "250"}, &out); err != nil {
				t.Errorf("%s: %v\n%s", name, err, out.String())
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, line := range strings.Split(out.String(), "\n") {
				if rest, ok := strings.CutPrefix(line, "spans: "); ok {
					for _, f := range strings.Fields(rest) {
						var s, e int64
						if _, err := fmt.Sscanf(f, "%d-%d", &s, &e); err == nil {
							spans[name] = append(spans[name], [2]int64{s, e})
						}
					}
				}
			}
		}()
		time.Sleep(200 * time.Millisecond) // acme's flood is first
	}
	wg.Wait()
	if len(spans["acme"]) != 60 || len(spans["globex"]) != 60 {
		t.Fatalf("spans: %d and %d, want 60 each", len(spans["acme"]), len(spans["globex"]))
	}
	// The window in which both had work: from globex's first start to
	// the first of the two floods' last end.
	first := func(ss [][2]int64) int64 {
		m := ss[0][0]
		for _, s := range ss {
			m = min(m, s[0])
		}
		return m
	}
	last := func(ss [][2]int64) int64 {
		m := ss[0][1]
		for _, s := range ss {
			m = max(m, s[1])
		}
		return m
	}
	from, to := first(spans["globex"]), min(last(spans["acme"]), last(spans["globex"]))
	busy := func(ss [][2]int64) float64 {
		var d int64
		for _, s := range ss {
			if lo, hi := max(s[0], from), min(s[1], to); hi > lo {
				d += hi - lo
			}
		}
		return float64(d)
	}
	ba, bg := busy(spans["acme"]), busy(spans["globex"])
	share := ba / (ba + bg)
	t.Logf("while both had work (%s): acme held %.1f%% of the CPU time, globex %.1f%%", time.Duration(to-from), 100*share, 100*(1-share))
	if share < 0.45 || share > 0.55 {
		t.Errorf("acme's share %.1f%%, globex's %.1f%%: not within 10%% of half each; tasks running each 100 ms:", 100*share, 100*(1-share))
		for t0 := first(spans["acme"]); t0 < max(last(spans["acme"]), last(spans["globex"])); t0 += 100e6 {
			n := map[string]int{}
			for name, ss := range spans {
				for _, s := range ss {
					if s[0] <= t0 && s[1] > t0 {
						n[name]++
					}
				}
			}
			t.Logf("%+6d ms: acme %d, globex %d (in the window: %v)", (t0-from)/1e6, n["acme"], n["globex"], t0 >= from && t0 < to)
		}
	}
}

// TestFairCaps: a contended cluster is divided by progressive filling of
// dominant shares; one that is not contended, or has one tenant, is not.
func TestFairCaps(t *testing.T) {
	cpus := func(n float64) scheduler.Resources { return scheduler.Resources{CPU: scheduler.Quantity(n)} }
	capacity := scheduler.Resources{CPU: scheduler.Quantity(6), Memory: 6 << 30}
	for _, tc := range []struct {
		name string
		need map[string]scheduler.Resources
		want map[string]float64 // CPUs each may hold; nil: no caps
	}{
		{"equal floods", map[string]scheduler.Resources{"a": cpus(40), "b": cpus(40)}, map[string]float64{"a": 3, "b": 3}},
		{"a small need", map[string]scheduler.Resources{"a": cpus(1), "b": cpus(40)}, map[string]float64{"a": 1, "b": 5}},
		{"three tenants", map[string]scheduler.Resources{"a": cpus(1), "b": cpus(40), "c": cpus(40)}, map[string]float64{"a": 1, "b": 2.5, "c": 2.5}},
		{"room for all", map[string]scheduler.Resources{"a": cpus(2), "b": cpus(3)}, nil},
		{"one tenant", map[string]scheduler.Resources{"a": cpus(40)}, nil},
		// b's dominant resource is memory (5 GiB of 6), a's CPU: both need
		// more than half of theirs, so each gets half of every resource.
		{"dominant memory", map[string]scheduler.Resources{"a": cpus(40), "b": {CPU: scheduler.Quantity(1), Memory: 5 << 30}}, map[string]float64{"a": 3, "b": 3}},
	} {
		got := fairCaps(tc.need, capacity)
		if tc.want == nil {
			if got != nil {
				t.Errorf("%s: caps %v, want none", tc.name, got)
			}
			continue
		}
		for tenant, cpu := range tc.want {
			if g := float64(got[tenant].CPU) / scheduler.Unit; g < cpu-0.01 || g > cpu+0.01 {
				t.Errorf("%s: %s may hold %v CPUs, want %v", tc.name, tenant, g, cpu)
			}
		}
	}
}

// TestTenantObjectBounds: a tenant's object store quota fails its own
// puts past it, naming the quota; a tenant that fills the node's spill
// room as far as it may (its share) makes its own puts fail while another
// tenant's puts on the same node all succeed.
func TestTenantObjectBounds(t *testing.T) {
	a := startJobsAgent(t, func(c *AgentConfig) {
		c.Node.ObjectStoreMemory = 16 << 20
		c.Node.SpillLimit = 48 << 20
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	filler, other := tenantClient(t, ctx, a, TenantInfo{Name: "filler"}), tenantClient(t, ctx, a, TenantInfo{Name: "other"})
	bounded := tenantClient(t, ctx, a, TenantInfo{Name: "bounded", MaxObjectStore: 8 << 20})
	waitUsageReport(t, a)
	hostile := guestBytes(t, "internal/testguests/hostile")
	var out strings.Builder
	if err := bounded.Submit(ctx, hostile, []string{"bigputs", "20", "1", "0"}, &out); err != nil {
		t.Fatalf("bounded: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "bigputs: 7 puts of 1 MiB held, then:") || !strings.Contains(out.String(), "object store quota of 8388608") {
		t.Fatalf("a tenant past its object store quota of 8 MiB:\n%s", out.String())
	}

	// The filler holds what it put for a minute; its puts stop at its
	// share of the spill room (half of it: no other tenant spilled yet).
	fillerOut := &syncBuilder{}
	go func() { _ = filler.Submit(ctx, hostile, []string{"bigputs", "200", "1", "60000"}, fillerOut) }()
	waitFor(t, time.Minute, "the filler's puts fail", func() bool { return strings.Contains(fillerOut.String(), "bigputs:") })
	if s := fillerOut.String(); !strings.Contains(s, "its share of 25165824") {
		t.Fatalf("the filler's puts:\n%s", s)
	}
	st := a.node.store.Stats()
	t.Logf("filler: %s; the store: %+v", strings.TrimSpace(fillerOut.String()), st.Owners)
	if sp := st.Owners["filler"].Spilled; sp > 24<<20 || sp < 23<<20 {
		t.Fatalf("the filler's spill files hold %d bytes, want (within a put) its share of 24 MiB", sp)
	}
	out.Reset()
	if err := other.Submit(ctx, hostile, []string{"bigputs", "10", "1", "0"}, &out); err != nil {
		t.Fatalf("other: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "bigputs: all 10 puts of 1 MiB held") {
		t.Fatalf("another tenant's puts beside the filler:\n%s", out.String())
	}
}

// syncBuilder is a strings.Builder that one goroutine writes while
// another reads.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
