package core

import "testing"

// TestObjectServedTo: a job's object's bytes are served only to a node it
// was sent to (held for it, or told to pull it); an object of no job to
// any node.
func TestObjectServedTo(t *testing.T) {
	h := newHarness(t)
	for _, l := range []string{"node n2 clustered cpu=2", "peer-up n1 cpu=1", "peer-up n3 cpu=1",
		"from n1 run_task job=j1 root=n1 task=T1 fn=f args=5", "module mod", "started w1", "ready w1",
		"create w1 seq=1 size=4000 result", "reserved w1 seq=1 id=c1.1 off=4096", "done w1 created=c1.1 size=4000",
		"add-object O1 value=7"} {
		h.run(l)
	}
	c := h.node().core
	for _, tc := range []struct {
		obj  string
		node NodeID
		want bool
	}{{"c1.1", "n1", true}, {"c1.1", "n3", false}, {"O1", "n3", true}, {"nothing", "n1", false}} {
		if got := c.ObjectServedTo(h.id(tc.obj), tc.node); got != tc.want {
			t.Errorf("ObjectServedTo(%s, %s) = %v, want %v", tc.obj, tc.node, got, tc.want)
		}
	}
}
