package scheduler

import (
	"reflect"
	"testing"
)

func TestLeaseAndHandoff(t *testing.T) {
	all := func(TaskID) bool { return true }
	c := New()
	c.AddNode("n1", cpu(1), nil)
	for _, id := range []TaskID{tid("a"), tid("b"), tid("c"), tid("d")} {
		c.Submit(Task{ID: id, Demand: cpu(1)})
	}
	c.Submit(Task{ID: tid("other"), Demand: cpu(0.5)}) // another class
	mustPlace(t, c, "a@n1")

	if got := c.Lease(tid("a"), 2, all); !reflect.DeepEqual(got, []TaskID{tid("b"), tid("c")}) {
		t.Fatalf("Lease(a, 2) = %v, want [b c]", got)
	}
	if c.Queued() != 2 || c.Running("n1") != 3 {
		t.Fatalf("queued %d running %d, want 2 and 3", c.Queued(), c.Running("n1"))
	}
	mustAvail(t, c, "n1", cpu(0)) // leased tasks charge nothing
	if got := c.Lease(tid("b"), 1, all); got != nil {
		t.Fatalf("a leased task leased %v", got)
	}
	if got := c.Lease(tid("a"), 5, func(id TaskID) bool { return id != tid("d") }); got != nil {
		t.Fatalf("accept refused d, yet Lease = %v", got)
	}

	// a ends; b takes its reservation; nothing else fits meanwhile.
	if !c.Handoff(tid("a"), tid("b")) {
		t.Fatal("Handoff(a, b) refused")
	}
	mustAvail(t, c, "n1", cpu(0))
	mustPlace(t, c)
	if c.Handoff(tid("a"), tid("c")) || c.Handoff(tid("c"), tid("b")) {
		t.Fatal("Handoff from an ended or leased task accepted")
	}

	// A leased task that is finished without running frees nothing.
	c.Finished(tid("c"))
	mustAvail(t, c, "n1", cpu(0))
	c.Finished(tid("b"))
	mustAvail(t, c, "n1", cpu(1))
	mustPlace(t, c, "d@n1")
}

func TestHandoffFromBlockedTask(t *testing.T) {
	c := New()
	c.AddNode("n1", cpu(2), nil)
	c.Submit(Task{ID: tid("a"), Demand: cpu(1)})
	c.Submit(Task{ID: tid("b"), Demand: cpu(1)})
	mustPlace(t, c, "a@n1", "b@n1")
	c.Submit(Task{ID: tid("c"), Demand: cpu(1)})
	if got := c.Lease(tid("a"), 1, func(TaskID) bool { return true }); len(got) != 1 {
		t.Fatalf("Lease = %v", got)
	}
	if got := c.Lease(tid("b"), 1, func(TaskID) bool { return true }); got != nil {
		t.Fatalf("empty class leased %v", got)
	}
	c.Blocked(tid("a"))
	c.Blocked(tid("c")) // leased: not running yet, a no-op
	mustAvail(t, c, "n1", cpu(1))
	if !c.Handoff(tid("a"), tid("c")) {
		t.Fatal("Handoff refused")
	}
	mustAvail(t, c, "n1", cpu(0)) // c runs with a whole CPU
	c.Finished(tid("c"))
	c.Finished(tid("b"))
	mustAvail(t, c, "n1", cpu(2))
}

func TestLeaseInBundleAndNodeLoss(t *testing.T) {
	c := New()
	c.AddNode("n1", cpu(2), nil)
	c.CreateGroup(Group{ID: gid("g"), Bundles: []Resources{cpu(1)}, Strategy: Pack})
	c.Schedule()
	for _, id := range []TaskID{tid("a"), tid("b")} {
		c.Submit(Task{ID: id, Demand: cpu(1), Group: gid("g"), Bundle: -1})
	}
	mustPlace(t, c, "a@n1")
	if got := c.Lease(tid("a"), 4, func(TaskID) bool { return true }); !reflect.DeepEqual(got, []TaskID{tid("b")}) {
		t.Fatalf("Lease = %v", got)
	}
	if !c.Handoff(tid("a"), tid("b")) {
		t.Fatal("Handoff in a bundle refused")
	}
	if got := c.RemoveNode("n1"); !reflect.DeepEqual(got, []TaskID{tid("b")}) {
		t.Fatalf("RemoveNode = %v, want [b]", got)
	}
}

func TestQueuedDemand(t *testing.T) {
	c := New()
	c.AddNode("n1", Resources{CPU: Quantity(1), Memory: 100}, nil)
	c.Submit(Task{ID: tid("a"), Demand: cpu(1)})
	c.Submit(Task{ID: tid("b"), Demand: Resources{CPU: Quantity(0.5), Memory: 10}})
	c.Submit(Task{ID: tid("c"), Demand: cpu(2), Deps: []ObjectKey{okey("x")}})
	mustPlace(t, c, "a@n1")
	if got, want := c.QueuedDemand(), (Resources{CPU: Quantity(2.5), Memory: 10}); got.String() != want.String() {
		t.Fatalf("QueuedDemand = %v, want %v", got, want)
	}
}

// A task adopted behind a running holder runs in the holder's reservation:
// it charges nothing, Finished forgets it, and the holder keeps the
// reservation until it finishes itself.
func TestAdopt(t *testing.T) {
	c := New()
	c.AddNode("n1", cpu(1), nil)
	c.Submit(Task{ID: tid("holder"), Demand: cpu(1)})
	mustPlace(t, c, "holder@n1")
	if !c.Adopt(tid("holder"), Task{ID: tid("x"), Demand: cpu(1)}) {
		t.Fatal("Adopt refused")
	}
	mustAvail(t, c, "n1", cpu(0))
	if c.Running("n1") != 2 {
		t.Fatalf("running %d, want 2", c.Running("n1"))
	}
	for _, bad := range []struct {
		holder TaskID
		t      Task
	}{
		{tid("holder"), Task{ID: tid("x")}},                  // known
		{tid("x"), Task{ID: tid("y")}},                       // a leased holder
		{tid("nobody"), Task{ID: tid("y")}},                  // unknown holder
		{tid("holder"), Task{ID: tid("y"), Group: gid("g")}}, // in a group
	} {
		if c.Adopt(bad.holder, bad.t) {
			t.Errorf("Adopt(%v, %v) accepted", bad.holder, bad.t.ID)
		}
	}
	c.Blocked(tid("x")) // adopted: its CPU is the holder's
	mustAvail(t, c, "n1", cpu(0))
	c.Finished(tid("x"))
	mustAvail(t, c, "n1", cpu(0))
	c.Submit(Task{ID: tid("next"), Demand: cpu(1)})
	mustPlace(t, c) // the holder still holds it
	c.Finished(tid("holder"))
	mustAvail(t, c, "n1", cpu(1))
	mustPlace(t, c, "next@n1")
}

// Detach hands a running task's reservation to a holder, behind which the
// task (and others, with Adopt) then run uncharged.
func TestDetach(t *testing.T) {
	c := New()
	c.AddNode("n1", cpu(1), nil)
	c.Submit(Task{ID: tid("first"), Demand: cpu(1)})
	mustPlace(t, c, "first@n1")
	if !c.Detach(tid("first"), tid("lease")) {
		t.Fatal("Detach refused")
	}
	if c.Detach(tid("first"), tid("other")) || c.Detach(tid("lease"), tid("lease")) {
		t.Fatal("Detach of an adopted task, or to a known holder, accepted")
	}
	mustAvail(t, c, "n1", cpu(0))
	c.Finished(tid("first"))
	mustAvail(t, c, "n1", cpu(0)) // the lease holds it
	if !c.Adopt(tid("lease"), Task{ID: tid("second"), Demand: cpu(1)}) {
		t.Fatal("Adopt behind the holder refused")
	}
	c.Finished(tid("second"))
	c.Finished(tid("lease"))
	mustAvail(t, c, "n1", cpu(1))
}
