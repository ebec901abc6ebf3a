//go:build linux

package fabric

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/core"
)

// TestSampleRing: the ring keeps the last hour, a step sampled again
// keeps the newer reading, and a tenant sees its own tasks only.
func TestSampleRing(t *testing.T) {
	var r sampleRing
	for i := range historyLength + 10 {
		r.add(nodeSample{T: int64(i * 10), Tenants: map[string]tenantSample{"acme": {Finished: uint64(i)}, "globex": {Running: 1}}})
	}
	r.add(nodeSample{T: int64((historyLength + 9) * 10), Processes: 7})
	all := r.since(0, core.TaskFilter{AnyTenant: true})
	if len(all) != historyLength || all[0].T != 100 || all[len(all)-1].Processes != 7 {
		t.Fatalf("%d samples, from %d, the last %+v", len(all), all[0].T, all[len(all)-1])
	}
	recent := r.since(int64((historyLength+5)*10), core.TaskFilter{Tenant: "acme"})
	if len(recent) != 5 || recent[0].T != int64((historyLength+5)*10) {
		t.Fatalf("since: %d samples from %d", len(recent), recent[0].T)
	}
	for _, s := range recent[:4] {
		if len(s.Tenants) != 1 || s.Tenants["acme"].Finished == 0 {
			t.Fatalf("acme's view of a sample: %+v", s.Tenants)
		}
	}
	if s := r.since(0, core.TaskFilter{Tenant: "initech"}); len(s) != historyLength || s[0].Tenants != nil {
		t.Fatalf("a tenant with no tasks sees %+v", s[0].Tenants)
	}
}

// TestHistory: GET /v1/history adds up both nodes' samples, counts a
// tenant's finished and failed tasks in the steps they ended in, shows
// another tenant none of them, and gives each node's latest sample.
func TestHistory(t *testing.T) {
	fast := func(c *AgentConfig) { c.historyStep = time.Second }
	a := startJobsAgent(t, fast)
	b := joinAgent(t, a, fast)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	acme := tenantClient(t, ctx, a, TenantInfo{Name: "acme"})
	globex := tenantClient(t, ctx, a, TenantInfo{Name: "globex"})
	hostile := guestBytes(t, "internal/testguests/hostile")
	if _, err := acme.SubmitWith(ctx, hostile, []string{"overlap", "4", "300"}, SubmitOptions{}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.SubmitWith(ctx, hostile, []string{"panic"}, SubmitOptions{}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	var h HistoryView
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var err error
		h, err = acme.History(ctx, 0)
		var finished, failed uint64
		for _, p := range h.Points {
			finished += p.Finished
			failed += p.Failed
		}
		// overlap's four tasks, panic's answer; panicky failed.
		if err == nil && finished >= 5 && failed >= 1 {
			if finished != 5 || failed != 1 { // counted once, by the owner, wherever they ran
				t.Fatalf("acme's history counts %d finished and %d failed, want 5 and 1\n%+v", finished, failed, h)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acme's history after 30 s: %d finished, %d failed, %v\n%+v", finished, failed, err, h)
		}
	}
	two := 0
	for _, p := range h.Points {
		if p.Nodes == 2 {
			two++
			if p.Total["CPU"] != 4 || p.StoreCapacity != 2*(64<<20) {
				t.Errorf("a step of two nodes: %+v", p)
			}
		}
	}
	if two == 0 || h.Step != 1 || len(h.Nodes) != 2 || h.Nodes[0].StoreCapacity != 64<<20 || len(h.Missing) != 0 {
		t.Fatalf("the history: %d steps of two nodes, step %d, nodes %+v, missing %v", two, h.Step, h.Nodes, h.Missing)
	}
	if ids := []string{h.Nodes[0].Node, h.Nodes[1].Node}; !(ids[0] == a.ID && ids[1] == b.ID || ids[0] == b.ID && ids[1] == a.ID) {
		t.Fatalf("the nodes' latest samples: %+v", h.Nodes)
	}
	g, err := globex.History(ctx, 0)
	if err != nil || len(g.Points) == 0 {
		t.Fatalf("globex's history: %+v, %v", g, err)
	}
	for _, p := range g.Points {
		if p.Finished != 0 || p.Failed != 0 || p.Running != 0 || p.Pending != 0 {
			t.Fatalf("globex sees acme's tasks: %+v", p)
		}
	}
	short, err := acme.History(ctx, 3)
	if err != nil || len(short.Points) == 0 || len(short.Points) > 5 {
		t.Fatalf("the last 3 s: %d points, %v", len(short.Points), err)
	}
	for _, w := range []int{-1, 3601} {
		if _, err := acme.History(ctx, w); err == nil || !strings.Contains(err.Error(), "400") {
			t.Fatalf("window %d: %v", w, err)
		}
	}
}
