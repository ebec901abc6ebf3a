package core

import (
	"strings"
	"testing"
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
