//go:build linux

package fabric

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/wire"
)

// TestStateTasks: the state API lists a tenant's tasks cluster-wide from
// any agent (each once, with the node it ran on), keeps a failed task's
// error, counts them by function, and shows a tenant nothing of
// another's.
func TestStateTasks(t *testing.T) {
	a := startJobsAgent(t, nil)
	b := joinAgent(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	acme := tenantClient(t, ctx, a, TenantInfo{Name: "acme"})
	globex := tenantClient(t, ctx, a, TenantInfo{Name: "globex"})
	admin := a.Client(a.APIToken())
	hostile := guestBytes(t, "internal/testguests/hostile")
	for _, j := range []struct {
		cl   *Client
		id   string
		args []string
	}{
		{acme, "spread", []string{"overlap", "6", "200"}},
		{acme, "boom", []string{"panic"}},
		{globex, "g", []string{"overlap", "2", "10"}},
	} {
		if _, err := j.cl.SubmitWith(ctx, hostile, j.args, SubmitOptions{ID: j.id}, io.Discard, io.Discard); err != nil && j.id != "boom" {
			t.Fatalf("job %s: %v", j.id, err)
		}
	}
	// From b, which ran none of the drivers: acme's job's six tasks, each
	// once, on both nodes, and its driver.
	acmeB := b.Client(acme.Token)
	spread, err := acmeB.Tasks(ctx, TaskQuery{Job: "spread"})
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]int{}
	for _, tk := range spread.Tasks {
		if tk.Job != "spread" || tk.Tenant != "acme" || tk.State != "finished" || tk.Ended == nil {
			t.Errorf("a task of job spread: %+v", tk)
		}
		if tk.Name == "hold" {
			nodes[tk.Node]++
		}
	}
	if spread.Total != 7 || len(spread.Tasks) != 7 || nodes[a.ID]+nodes[b.ID] != 6 || nodes[a.ID] == 0 || nodes[b.ID] == 0 || len(spread.Missing) != 0 {
		t.Fatalf("job spread: %d of %d tasks, hold on %v, missing %v", len(spread.Tasks), spread.Total, nodes, spread.Missing)
	}
	// Its timeline: each hold task's span where it ran, on its worker.
	raw, err := acme.Timeline(ctx, "spread")
	if err != nil {
		t.Fatal(err)
	}
	var events []traceEvent
	if err := json.Unmarshal(raw, &events); err != nil {
		t.Fatal(err)
	}
	spans := map[string]int{}
	for _, e := range events {
		if e.Name != "hold" {
			continue
		}
		spans[e.Pid]++
		if e.Ph != "X" || e.Dur < 190e3 || e.Dur > 10e6 || e.Tid == "Worker (not seen)" || e.Args["state"] != "finished" {
			t.Errorf("a span of hold: %+v", e)
		}
	}
	if spans["Node "+a.ID]+spans["Node "+b.ID] != 6 || spans["Node "+a.ID] == 0 || spans["Node "+b.ID] == 0 {
		t.Fatalf("the timeline's hold spans by node: %v\n%s", spans, raw)
	}
	if _, err := globex.Timeline(ctx, "spread"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("globex asks for acme's timeline: %v", err)
	}
	// The failed task keeps its error: the guest's message and stack.
	failed, err := acme.Tasks(ctx, TaskQuery{State: "failed"})
	if err != nil {
		t.Fatal(err)
	}
	if len(failed.Tasks) != 1 || failed.Tasks[0].Name != "panicky" || failed.Tasks[0].Job != "boom" ||
		!strings.Contains(failed.Tasks[0].Error, "boom: the guest panicked") || failed.Tasks[0].ErrorType == "" {
		t.Fatalf("acme's failed tasks: %+v", failed.Tasks)
	}
	sum, err := acme.TaskSummary(ctx, TaskQuery{})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]map[string]int{}
	for _, r := range sum.Rows {
		counts[r.Name] = r.States
	}
	if counts["hold"]["finished"] != 6 || counts["panicky"]["failed"] != 1 || counts["main"]["finished"] != 2 || sum.Total < 9 {
		t.Fatalf("acme's summary: %+v", sum)
	}
	// A member's query past the bounds is answered within them.
	raw0, err := a.handleTasksPeer(ctx, mustMarshal(taskQuery{Limit: -1, Token: acme.Token}))
	if err != nil {
		t.Fatal(err)
	}
	var rep taskReply
	if err := wire.Unmarshal(raw0, &rep); err != nil || rep.Total == 0 || len(rep.Tasks) > defaultTaskList {
		t.Fatalf("a query with limit -1: %d of %d, %v", len(rep.Tasks), rep.Total, err)
	}
	if _, err := b.handleTasksPeer(ctx, mustMarshal(taskQuery{Token: "fabric_forged"})); err == nil {
		t.Fatal("a forged relayed token was answered")
	}
	// A tenant sees nothing of another's, even naming its job.
	g, err := globex.Tasks(ctx, TaskQuery{})
	if err != nil || g.Total < 3 {
		t.Fatalf("globex's tasks: %+v, %v", g, err)
	}
	for _, tk := range g.Tasks {
		if tk.Tenant != "globex" || tk.Job != "g" {
			t.Errorf("globex lists %+v", tk)
		}
	}
	if _, err := globex.Tasks(ctx, TaskQuery{Job: "spread"}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("globex asks for acme's job's tasks: %v", err)
	}
	// The cluster's operator sees every tenant's, under the jobs' keys.
	all, err := admin.Tasks(ctx, TaskQuery{Limit: 2})
	if err != nil || all.Total != sum.Total+g.Total || len(all.Tasks) != 2 {
		t.Fatalf("the operator's newest two: %+v, %v", all, err)
	}
	if boom, err := admin.Tasks(ctx, TaskQuery{Job: "acme:boom", State: "failed"}); err != nil || len(boom.Tasks) != 1 || boom.Tasks[0].Job != "acme:boom" {
		t.Fatalf("the operator's view of acme's failure: %+v, %v", boom, err)
	}
	if _, err := acme.Tasks(ctx, TaskQuery{State: "lost"}); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("a bad state: %v", err)
	}

	// Actors: listed from their owner, from any agent, while they live.
	if _, err := acme.SubmitDetached(ctx, hostile, []string{"actors", "3", "60000", "pg"}, SubmitOptions{ID: "keepers"}); err != nil {
		t.Fatal(err)
	}
	var actors ActorList
	waitFor(t, 30*time.Second, "acme's three actors alive", func() bool {
		actors, err = acmeB.Actors(ctx, ActorQuery{Job: "keepers", State: "alive"})
		return err == nil && len(actors.Actors) == 3
	})
	for _, x := range actors.Actors {
		if x.Class != "Keeper" || x.Job != "keepers" || x.Tenant != "acme" || x.Node == "" || x.Created.IsZero() {
			t.Errorf("an actor: %+v", x)
		}
	}
	if g, err := globex.Actors(ctx, ActorQuery{}); err != nil || len(g.Actors) != 0 {
		t.Fatalf("globex lists actors %+v, %v", g, err)
	}
	if all, err := admin.Actors(ctx, ActorQuery{Class: "Keeper"}); err != nil || len(all.Actors) != 3 || all.Actors[0].Job != "acme:keepers" {
		t.Fatalf("the operator lists actors %+v, %v", all, err)
	}
	// The keepers' timeline: each actor made, an instant on its node (on
	// its worker's track where the owner knows the process: an actor
	// placed on another node is "Worker (not seen)" there).
	raw, err = acmeB.Timeline(ctx, "keepers")
	if err != nil {
		t.Fatal(err)
	}
	events = nil
	if err := json.Unmarshal(raw, &events); err != nil {
		t.Fatal(err)
	}
	made := map[string]bool{}
	for _, e := range events {
		if e.Cat == "actor" {
			if e.Name != "Keeper created" || e.Ph != "i" || e.Pid != "Node "+a.ID && e.Pid != "Node "+b.ID || e.Args["state"] != "alive" {
				t.Errorf("an actor's event: %+v", e)
			}
			made[e.Args["actor_id"].(string)] = true
		}
	}
	if len(made) != 3 {
		t.Fatalf("the keepers' timeline has %d actors made: %s", len(made), raw)
	}
	// The summary of acme's actors, from b; globex counts none.
	if sum, err := acmeB.ActorSummary(ctx, ActorQuery{}); err != nil || sum.Total != 3 || len(sum.Rows) != 1 ||
		sum.Rows[0].Class != "Keeper" || sum.Rows[0].States["alive"] != 3 || sum.Rows[0].Restarts != 0 {
		t.Fatalf("acme's actor summary: %+v, %v", sum, err)
	}
	if sum, err := globex.ActorSummary(ctx, ActorQuery{}); err != nil || sum.Total != 0 || len(sum.Rows) != 0 {
		t.Fatalf("globex's actor summary: %+v, %v", sum, err)
	}
	// Its workers (the driver's, one per actor) and its placement group,
	// spread over the two nodes.
	var workers WorkerList
	waitFor(t, 30*time.Second, "the keepers' workers and group", func() bool {
		workers, err = acmeB.Workers(ctx, "keepers", 0)
		return err == nil && len(workers.Workers) >= 4
	})
	kinds := map[string]int{}
	for _, w := range workers.Workers {
		kinds[w.Kind]++
		if w.Job != "keepers" || w.Pid == 0 || w.Kind == "actor" && w.Running != "Keeper" {
			t.Errorf("a worker: %+v", w)
		}
	}
	if kinds["driver"] != 1 || kinds["actor"] != 3 {
		t.Fatalf("the keepers' workers by kind: %v", kinds)
	}
	var pgs PlacementGroupList
	waitFor(t, 30*time.Second, "the keepers' placement group", func() bool {
		pgs, err = acmeB.PlacementGroups(ctx, "keepers", 0)
		return err == nil && len(pgs.Groups) == 1 && pgs.Groups[0].State == "created"
	})
	if g := pgs.Groups[0]; g.Name != "pair" || g.Strategy != "SPREAD" || len(g.Nodes) != 2 || g.Nodes[0] == g.Nodes[1] || g.Job != "keepers" {
		t.Fatalf("the keepers' group: %+v", g)
	}
	for _, list := range []func() (int, error){
		func() (int, error) { l, err := globex.Workers(ctx, "", 0); return len(l.Workers), err },
		func() (int, error) { l, err := globex.PlacementGroups(ctx, "", 0); return len(l.Groups), err },
	} {
		if n, err := list(); err != nil || n != 0 {
			t.Fatalf("globex lists %d of acme's, %v", n, err)
		}
	}
	if _, err := acme.StopJob(ctx, "keepers"); err != nil {
		t.Fatal(err)
	}

	// Objects: a job's puts, held where they were made.
	if _, err := acme.SubmitDetached(ctx, hostile, []string{"bigputs", "3", "1", "60000"}, SubmitOptions{ID: "puts"}); err != nil {
		t.Fatal(err)
	}
	var objs ObjectList
	waitFor(t, 30*time.Second, "acme's three objects", func() bool {
		objs, err = acmeB.Objects(ctx, "puts", 0)
		return err == nil && len(objs.Objects) == 3
	})
	for _, o := range objs.Objects {
		if o.Size < 1<<20 || o.State != "ready" || o.Job != "puts" || len(o.Locations) != 1 || o.Locations[0] != a.ID || o.Spilled {
			t.Errorf("an object: %+v", o)
		}
	}
	if g, err := globex.Objects(ctx, "", 0); err != nil || len(g.Objects) != 0 {
		t.Fatalf("globex lists objects %+v, %v", g, err)
	}
	if all, err := admin.Objects(ctx, "acme:puts", 0); err != nil || len(all.Objects) != 3 || all.Objects[0].Tenant != "acme" {
		t.Fatalf("the operator lists objects %+v, %v", all, err)
	}
	// Their summary: three objects of job puts, each once, their bytes.
	osum, err := acmeB.ObjectSummary(ctx, "")
	if err != nil || len(osum.Rows) == 0 {
		t.Fatalf("acme's object summary: %+v, %v", osum, err)
	}
	for _, row := range osum.Rows {
		if row.Job != "puts" {
			continue
		}
		if row.Objects != 3 || row.States["ready"] != 3 || row.Bytes < 3<<20 || row.Spilled != 0 || row.Tenant != "acme" {
			t.Fatalf("acme's object summary of puts: %+v", row)
		}
	}
	if g, err := globex.ObjectSummary(ctx, ""); err != nil || g.Total != 0 {
		t.Fatalf("globex's object summary: %+v, %v", g, err)
	}
	if _, err := globex.ObjectSummary(ctx, "puts"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("globex asks for acme's job's objects: %v", err)
	}
	if _, err := acme.StopJob(ctx, "puts"); err != nil {
		t.Fatal(err)
	}
}

// TestTenantSlots: a tenant holds at most its share of the slots, and
// another gets the rest.
func TestBoundedLimit(t *testing.T) {
	for in, want := range map[int]int{-1: defaultTaskList, 0: defaultTaskList, 1: 1, maxTaskList: maxTaskList, maxTaskList + 1: maxTaskList, 1 << 40: maxTaskList} {
		if got := boundedLimit(in); got != want {
			t.Errorf("boundedLimit(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestTenantSlots(t *testing.T) {
	s := newTenantSlots(4, 2)
	var held []func()
	for _, c := range []struct {
		tenant string
		ok     bool
	}{{"a", true}, {"a", true}, {"a", false}, {"b", true}, {"", true}, {"b", false}, {"c", false}} {
		release, ok := s.acquire(c.tenant)
		if ok != c.ok {
			t.Fatalf("acquire(%q) = %v, want %v", c.tenant, ok, c.ok)
		}
		if ok {
			held = append(held, release)
		}
	}
	held[0]() // one of a's
	if _, ok := s.acquire("c"); !ok {
		t.Fatal("a freed slot is not taken")
	}
	if _, ok := s.acquire("a"); ok {
		t.Fatal("more than the total")
	}
	if !strings.Contains(s.busy("a").Error(), "at most 2 for one tenant") {
		t.Fatal(s.busy("a"))
	}
}
