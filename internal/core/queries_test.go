package core

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/wasmfabric/fabric/internal/objects"
)

// TestQueries: what the shell reads of the core.
func TestQueries(t *testing.T) {
	h := newHarness(t)
	h.run("job j1")
	h.run("started w1")
	h.run("ready w1")
	h.run("put w1 o1 value=7")
	h.run("put w1 o2 bytes=5000")
	h.run("stored o2")
	h.run("submit w1 T1 fn=slow")
	c := h.node().core
	if v, stored, ok := c.ObjectBytes(h.id("o1")); !ok || stored || string(v) != string(value("7")) {
		t.Errorf("o1: %x %v %v", v, stored, ok)
	}
	if _, stored, ok := c.ObjectBytes(h.id("o2")); !ok || !stored {
		t.Errorf("o2 is stored: %v %v", stored, ok)
	}
	if _, _, ok := c.ObjectBytes(h.id("T1.1")); ok {
		t.Error("a value not made yet is served")
	}
	if !c.HasObject(h.id("T1.1")) || c.HasObject(h.id("nothing")) {
		t.Error("HasObject")
	}
	if got := strings.Join(c.TaskNames(), " "); got != "main slow" {
		t.Errorf("task names %q", got)
	}
	if d := c.Describe(); !strings.Contains(d, "job j1") || !strings.Contains(d, "slow") {
		t.Errorf("describe:\n%s", d)
	}
	st := c.Stats()
	if st.Jobs != 1 || st.Tasks != 2 || st.Objects != 3 || st.Stored != 1 || st.Nodes != 1 {
		t.Errorf("stats %+v", st)
	}
	if c.CheckInvariants() != nil || c.CheckIdle() == nil {
		t.Error("a busy node is idle")
	}
}

// TestHistoryBound adds records of random tenants and states past the
// bound: the count stays at the bound, matches a recount, and a tenant
// with few records keeps them all while another floods.
func TestHistoryBound(t *testing.T) {
	h := history{max: 100}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 10_000 {
		r := TaskRecord{Tenant: []string{"a", "b", "c"}[rng.IntN(3)], State: TaskFinished, Submitted: Time(i)}
		if rng.IntN(10) == 0 {
			r.State = TaskFailed
		}
		if i%100 == 0 {
			r.Tenant = "quiet" // 100 records in all, one each 100
		}
		h.add(r)
		n := 0
		h.each(&TaskFilter{AnyTenant: true}, func(*TaskRecord) { n++ })
		if n != h.n || h.n > h.max {
			t.Fatalf("step %d: %d records, counted %d, bound %d", i, n, h.n, h.max)
		}
	}
	quiet := 0
	h.each(&TaskFilter{Tenant: "quiet"}, func(*TaskRecord) { quiet++ })
	if quiet == 0 || quiet > 25 {
		t.Fatalf("the quiet tenant keeps %d records of 100", quiet)
	}
	for _, name := range []string{"a", "b", "c"} {
		failed := 0
		h.each(&TaskFilter{Tenant: name, State: TaskFailed}, func(*TaskRecord) { failed++ })
		if failed == 0 {
			t.Errorf("tenant %s kept none of its failures", name)
		}
	}
}

// BenchmarkTaskRecords: what a state API query holds the core's lock
// for, with a full history of 100,000 ended tasks and 1,000 live ones
// (the shell sorts and cuts outside the lock).
func BenchmarkTaskRecords(b *testing.B) {
	c := New(Config{Node: "n1"}, newFakeStore())
	j := &job{id: "j", tenant: "acme"}
	for i := range DefaultTaskHistory {
		c.history.add(TaskRecord{ID: objects.ID{byte(i), byte(i >> 8), byte(i >> 16)}, Job: j.id, Tenant: "acme", Name: "square", Kind: "task", State: TaskFinished, Submitted: Time(i)})
	}
	for i := range 1000 {
		id := objects.ID{1, byte(i), byte(i >> 8), 7}
		c.tasks[id] = &task{id: id, job: j, name: "square", state: taskQueued}
	}
	b.Run("all", func(b *testing.B) {
		for b.Loop() {
			if _, total := c.TaskRecords(TaskFilter{Tenant: "acme"}, 100); total != 101_000 {
				b.Fatal("records")
			}
		}
	})
	b.Run("failed", func(b *testing.B) {
		for b.Loop() {
			c.TaskRecords(TaskFilter{Tenant: "acme", State: TaskFailed}, 100)
		}
	})
	b.Run("summary", func(b *testing.B) {
		for b.Loop() {
			c.TaskSummary(TaskFilter{Tenant: "acme"})
		}
	})
	b.Run("all10000", func(b *testing.B) {
		for b.Loop() {
			c.TaskRecords(TaskFilter{Tenant: "acme"}, 10_000)
		}
	})
}
