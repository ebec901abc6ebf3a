package core

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
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
		if rng.IntN(3) == 0 {
			r.Error = fmt.Sprintf("error %d", i) // a string of its own
		}
		h.add(r)
		n := 0
		h.each(&TaskFilter{AnyTenant: true}, func(*TaskRecord) { n++ })
		if n != h.n || h.n > h.max {
			t.Fatalf("step %d: %d records, counted %d, bound %d", i, n, h.n, h.max)
		}
		if err := h.checkStrings(); err != nil {
			t.Fatalf("step %d: %v", i, err)
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

// TestHistoryRecords: a record comes back as it was added, every field,
// and a filter naming a string no record holds selects none.
func TestHistoryRecords(t *testing.T) {
	h := history{max: 10}
	want := []TaskRecord{
		{ID: objects.ID{1}, Job: "j1", Tenant: "acme", Name: "Model.predict", Kind: "method", Actor: objects.ID{9}, State: TaskFinished,
			Node: "n1", For: "n2", Pid: 4242, Attempt: 2, Submitted: 1, Placed: 2, Started: 3, Ended: 4},
		{ID: objects.ID{2}, Job: "j1", Tenant: "acme", Name: "square", Kind: "task", State: TaskFailed, Node: "n1",
			Error: "trap: unreachable", ErrorKind: "task_error", Attempt: 1, Submitted: 5, Ended: 6},
		{ID: objects.ID{3}, Job: "j2", Tenant: "other", Name: "main", Kind: "driver", State: TaskFinished, Node: "n1", Attempt: 1},
	}
	for _, r := range want {
		h.add(r)
	}
	var got []TaskRecord
	h.each(&TaskFilter{AnyTenant: true}, func(r *TaskRecord) { got = append(got, *r) })
	slices.SortFunc(got, func(a, b TaskRecord) int { return slices.Compare(a.ID[:], b.ID[:]) })
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("records\n got %+v\nwant %+v", got, want)
	}
	for _, f := range []TaskFilter{{AnyTenant: true, Job: "j3"}, {AnyTenant: true, Name: "cube"}, {Tenant: "nobody"}, {AnyTenant: true, State: TaskPending}} {
		h.each(&f, func(r *TaskRecord) { t.Errorf("filter %+v selects %+v", f, r) })
	}
	n := 0
	h.each(&TaskFilter{Tenant: "acme", Own: true}, func(*TaskRecord) { n++ })
	if n != 1 {
		t.Errorf("acme's own records: %d, want 1", n)
	}
}

// BenchmarkHistoryAdd: what keeping an ended task's record costs the
// core, the history full.
func BenchmarkHistoryAdd(b *testing.B) {
	h := history{max: DefaultTaskHistory}
	r := TaskRecord{Job: "j", Tenant: "acme", Name: "Echo.__call__", Kind: "method", State: TaskFinished, Node: "n1", Attempt: 1}
	i := 0
	for b.Loop() {
		r.ID = objects.ID{byte(i), byte(i >> 8), byte(i >> 16)}
		r.Submitted = Time(i)
		h.add(r)
		i++
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

// checkStrings checks that the string table counts, for each string,
// the references the kept records hold.
func (h *history) checkStrings() error {
	refs := make([]int32, len(h.strs.refs))
	for _, t := range h.byTenant {
		for _, q := range []*recordRing{&t.finished, &t.failed} {
			for i := range q.n {
				for _, s := range q.at(i).strs {
					refs[s]++
				}
			}
		}
	}
	live := 0
	for i := 1; i < len(refs); i++ {
		if refs[i] != h.strs.refs[i] {
			return fmt.Errorf("core: string %d (%q) counts %d references, the records hold %d", i, h.strs.strs[i], h.strs.refs[i], refs[i])
		}
		if refs[i] > 0 {
			live++
			if h.strs.index[h.strs.strs[i]] != uint32(i) {
				return fmt.Errorf("core: string %d (%q) is not indexed", i, h.strs.strs[i])
			}
		}
	}
	if live != len(h.strs.index) {
		return fmt.Errorf("core: %d strings are indexed, %d are held", len(h.strs.index), live)
	}
	return nil
}

// TestHistoryErrorBytes: failures with long unique messages hold at most
// maxErrorBytes of text; the tenant whose records hold the most loses
// its oldest, and another tenant's few failures stay.
func TestHistoryErrorBytes(t *testing.T) {
	h := history{max: DefaultTaskHistory}
	h.add(TaskRecord{Tenant: "quiet", State: TaskFailed, Error: "a short failure"})
	msg := strings.Repeat("x", maxRecordError-16)
	n := 2 * maxErrorBytes / len(msg)
	for i := range n {
		h.add(TaskRecord{Tenant: "loud", State: TaskFailed, Error: fmt.Sprintf("%s %08d", msg, i)})
		if h.errBytes > maxErrorBytes {
			t.Fatalf("record %d: %d bytes of errors", i, h.errBytes)
		}
	}
	if err := h.checkStrings(); err != nil {
		t.Fatal(err)
	}
	kept := 0
	h.each(&TaskFilter{Tenant: "loud"}, func(*TaskRecord) { kept++ })
	if kept == 0 || kept >= n {
		t.Errorf("loud keeps %d of %d failures", kept, n)
	}
	quiet := 0
	h.each(&TaskFilter{Tenant: "quiet"}, func(*TaskRecord) { quiet++ })
	if quiet != 1 {
		t.Errorf("quiet keeps %d failures, want 1", quiet)
	}
}
