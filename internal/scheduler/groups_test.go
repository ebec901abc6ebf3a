package scheduler

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func groupsOf(p Plan) []string {
	var out []string
	for _, g := range p.Groups {
		var ns []string
		for _, n := range g.Nodes {
			ns = append(ns, string(n))
		}
		out = append(out, g.Group.String()+"@"+strings.Join(ns, ","))
	}
	return out
}

// mustGroups schedules and checks both the groups and the tasks placed.
func mustGroups(t *testing.T, c *Core, groups []string, tasks ...string) Plan {
	t.Helper()
	p := c.Schedule()
	if got := groupsOf(p); !reflect.DeepEqual(got, groups) {
		t.Fatalf("groups = %v, want %v (infeasible %v)", got, groups, p.GroupsInfeasible)
	}
	if got := place(p); !reflect.DeepEqual(got, tasks) {
		t.Fatalf("placements = %v, want %v (infeasible %v)", got, tasks, p.Infeasible)
	}
	return p
}

func bundles(n int, r Resources) []Resources {
	out := make([]Resources, n)
	for i := range out {
		out[i] = r
	}
	return out
}

func TestStrategyNames(t *testing.T) {
	for _, tc := range []struct {
		s    Strategy
		name string
	}{{Pack, "PACK"}, {Spread, "SPREAD"}, {StrictPack, "STRICT_PACK"}, {StrictSpread, "STRICT_SPREAD"}} {
		if got := tc.s.String(); got != tc.name {
			t.Errorf("%d.String() = %q, want %q", tc.s, got, tc.name)
		}
		for _, in := range []string{tc.name, strings.ToLower(tc.name)} {
			if got, err := ParseStrategy(in); err != nil || got != tc.s {
				t.Errorf("ParseStrategy(%q) = %v, %v", in, got, err)
			}
		}
	}
	if got := Strategy(9).String(); got != "Strategy(9)" {
		t.Errorf("String = %q", got)
	}
	_, err := ParseStrategy("strict")
	if err == nil || !strings.Contains(err.Error(), "PACK, SPREAD, STRICT_PACK, STRICT_SPREAD") {
		t.Fatalf("ParseStrategy(strict) error = %v", err)
	}
}

func TestGroupStrategies(t *testing.T) {
	four := map[NodeID]Resources{"a": cpu(4), "b": cpu(4), "c": cpu(4)}
	for _, tc := range []struct {
		name     string
		nodes    map[NodeID]Resources
		strategy Strategy
		bundles  []Resources
		want     []NodeID
	}{
		{"pack fits one node", four, Pack, bundles(3, cpu(1)), []NodeID{"a", "a", "a"}},
		{"pack overflows", four, Pack, bundles(3, cpu(2)), []NodeID{"a", "a", "b"}},
		{"pack prefers used node", four, Pack, []Resources{cpu(3), cpu(2), cpu(1)}, []NodeID{"a", "b", "a"}},
		{"spread", four, Spread, bundles(3, cpu(1)), []NodeID{"a", "b", "c"}},
		{"spread wraps", four, Spread, bundles(4, cpu(1)), []NodeID{"a", "b", "c", "a"}},
		{"spread skips full node", map[NodeID]Resources{"a": cpu(4), "b": cpu(1), "c": cpu(4)}, Spread, bundles(3, cpu(2)), []NodeID{"a", "c", "a"}},
		{"strict pack", four, StrictPack, bundles(3, cpu(1)), []NodeID{"a", "a", "a"}},
		{"strict pack first node with room", map[NodeID]Resources{"a": cpu(2), "b": cpu(4), "c": cpu(4)}, StrictPack, bundles(3, cpu(1)), []NodeID{"b", "b", "b"}},
		{"strict spread", four, StrictSpread, bundles(3, cpu(1)), []NodeID{"a", "b", "c"}},
		// Greedy would put bundle 0 on a and find no room for bundle 1.
		{"strict spread matching", map[NodeID]Resources{"a": cpu(4), "b": cpu(1), "c": cpu(1)}, StrictSpread, []Resources{cpu(1), cpu(3)}, []NodeID{"b", "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			for _, id := range []NodeID{"c", "a", "b"} {
				c.AddNode(id, tc.nodes[id], nil)
			}
			c.CreateGroup(Group{ID: gid("g"), Bundles: tc.bundles, Strategy: tc.strategy})
			c.CreateGroup(Group{ID: gid("g"), Bundles: bundles(1, cpu(100))}) // duplicate: ignored
			if c.GroupPlaced(gid("g")) {
				t.Fatal("placed before Schedule")
			}
			p := c.Schedule()
			want := []GroupPlacement{{Group: gid("g"), Nodes: tc.want}}
			if !reflect.DeepEqual(p.Groups, want) || p.GroupsInfeasible != nil {
				t.Fatalf("plan groups = %v (infeasible %v), want %v", p.Groups, p.GroupsInfeasible, want)
			}
			if got, ok := c.GroupNodes(gid("g")); !ok || !reflect.DeepEqual(got, tc.want) || !c.GroupPlaced(gid("g")) {
				t.Fatalf("GroupNodes = %v, %v", got, ok)
			}
			// Each node's available resources lose the bundles it holds.
			for _, id := range c.Nodes() {
				free := tc.nodes[id]
				for i, n := range tc.want {
					if n == id {
						free = free.Sub(tc.bundles[i])
					}
				}
				mustAvail(t, c, id, free)
			}
			if p := c.Schedule(); p.Groups != nil {
				t.Fatalf("placed again: %v", p.Groups)
			}
		})
	}
}

func TestGroupInfeasible(t *testing.T) {
	for _, tc := range []struct {
		name  string
		group Group
		want  string
	}{
		{"strict spread", Group{Bundles: bundles(3, cpu(1)), Strategy: StrictSpread},
			"placement group needs 3 bundles on distinct nodes (STRICT_SPREAD) but the cluster has 2 nodes"},
		{"strict spread no matching", Group{Bundles: bundles(2, cpu(3)), Strategy: StrictSpread},
			"placement group needs 2 bundles on distinct nodes (STRICT_SPREAD) but no 2 nodes of the cluster can hold them"},
		{"strict pack", Group{Bundles: bundles(2, cpu(2)), Strategy: StrictPack},
			"placement group needs CPU: 4 on one node (STRICT_PACK) but no node can ever provide it"},
		{"bundle too big", Group{Bundles: []Resources{cpu(1), {GPU: Unit}}, Strategy: Spread},
			"placement group bundle 1 needs GPU: 1 but no node can ever provide it"},
		{"pack over cluster", Group{Bundles: bundles(3, cpu(2)), Strategy: Pack},
			"placement group needs CPU: 6 in all but the whole cluster has CPU: 5"},
		{"unknown strategy", Group{Bundles: bundles(1, cpu(1)), Strategy: 7},
			"placement group has unknown strategy Strategy(7)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			tc.group.ID = gid("g")
			c.CreateGroup(tc.group)
			c.Submit(Task{ID: tid("t"), Demand: cpu(0.5), Group: gid("g")})
			// With no nodes, the group and its task stay queued.
			if p := c.Schedule(); p.GroupsInfeasible != nil || p.Infeasible != nil {
				t.Fatalf("no nodes: %+v", p)
			}
			c.AddNode("a", cpu(2), nil)
			c.AddNode("b", cpu(3), nil)
			c.CreateGroup(Group{ID: gid("later"), Bundles: bundles(1, cpu(1))})
			p := c.Schedule()
			want := []GroupInfeasible{{Group: gid("g"), Reason: tc.want}}
			if !reflect.DeepEqual(p.GroupsInfeasible, want) {
				t.Fatalf("GroupsInfeasible = %v, want %v", p.GroupsInfeasible, want)
			}
			// The dropped group blocks no later group; its task goes too.
			if got := groupsOf(p); !reflect.DeepEqual(got, []string{"later@a"}) {
				t.Fatalf("groups = %v", got)
			}
			if len(p.Infeasible) != 1 || p.Infeasible[0].Task != tid("t") || !strings.Contains(p.Infeasible[0].Reason, "does not exist") {
				t.Fatalf("Infeasible = %v", p.Infeasible)
			}
			if c.GroupPlaced(gid("g")) || c.RemoveGroup(gid("g")) != nil || c.Queued() != 0 {
				t.Fatal("group still known")
			}
			mustAvail(t, c, "a", cpu(1))
			mustAvail(t, c, "b", cpu(3))
		})
	}
}

func TestGroupWaitsForResources(t *testing.T) {
	c := New()
	c.AddNode("a", cpu(4), nil)
	c.Submit(Task{ID: tid("big"), Demand: cpu(3)})
	mustGroups(t, c, nil, "big@a")
	c.CreateGroup(Group{ID: gid("pack"), Bundles: bundles(2, cpu(1)), Strategy: StrictPack})
	c.CreateGroup(Group{ID: gid("small"), Bundles: bundles(1, cpu(0.5)), Strategy: Pack})
	c.Submit(Task{ID: tid("in-pack"), Demand: cpu(1), Group: gid("pack")})
	c.Submit(Task{ID: tid("plain"), Demand: cpu(0.5)})
	// pack waits for room, small waits behind it (FIFO), plain is not blocked.
	mustGroups(t, c, nil, "plain@a")
	if c.GroupPlaced(gid("pack")) || c.GroupPlaced(gid("small")) {
		t.Fatal("placed")
	}
	if _, ok := c.GroupNodes(gid("pack")); ok {
		t.Fatal("GroupNodes ok before placed")
	}
	mustGroups(t, c, nil)
	c.Finished(tid("big"))
	mustGroups(t, c, []string{"pack@a,a", "small@a"}, "in-pack@a")
	mustAvail(t, c, "a", cpu(1))
}

func TestGroupReservationHidden(t *testing.T) {
	c := New()
	c.AddNode("a", Resources{CPU: 4 * Unit, Memory: gib}, nil)
	c.CreateGroup(Group{ID: gid("g"), Bundles: []Resources{{CPU: 3 * Unit, Memory: 512 * mib}}, Strategy: StrictPack})
	c.Submit(Task{ID: tid("plain"), Demand: cpu(2)})
	mustGroups(t, c, []string{"g@a"})
	mustAvail(t, c, "a", Resources{CPU: Unit, Memory: 512 * mib})
	mustGroups(t, c, nil)
	if got := c.RemoveGroup(gid("g")); got != nil {
		t.Fatalf("RemoveGroup = %v", got)
	}
	mustAvail(t, c, "a", Resources{CPU: 4 * Unit, Memory: gib})
	mustGroups(t, c, nil, "plain@a")
}

func TestGroupTasksInBundle(t *testing.T) {
	c := New()
	c.AddNode("a", cpu(8), nil)
	c.AddNode("b", cpu(8), nil)
	c.CreateGroup(Group{ID: gid("g"), Bundles: []Resources{cpu(2), cpu(1)}, Strategy: StrictSpread})
	for _, tk := range []Task{
		{ID: tid("t1"), Demand: cpu(2), Group: gid("g"), Bundle: 0},
		{ID: tid("t2"), Demand: cpu(2), Group: gid("g"), Bundle: 0},
		{ID: tid("t3"), Demand: cpu(1), Group: gid("g"), Bundle: 1},
		{ID: tid("huge"), Demand: cpu(1.5), Group: gid("g"), Bundle: 1},
		{ID: tid("bad"), Demand: cpu(1), Group: gid("g"), Bundle: 2},
	} {
		c.Submit(tk)
	}
	p := mustGroups(t, c, []string{"g@a,b"}, "t1@a", "t3@b")
	want := []Infeasible{
		{Task: tid("huge"), Reason: "task needs CPU: 1.5 but bundle 1 of placement group g has only CPU: 1"},
		{Task: tid("bad"), Reason: "task needs CPU: 1 in bundle 2 of placement group g but the group has 2 bundles"},
	}
	if !reflect.DeepEqual(p.Infeasible, want) {
		t.Fatalf("Infeasible = %v, want %v", p.Infeasible, want)
	}
	// t2 waits for its bundle although a has 6 CPU free outside it.
	mustAvail(t, c, "a", cpu(6))
	mustGroups(t, c, nil)
	c.Finished(tid("t1"))
	mustGroups(t, c, nil, "t2@a")
	// Blocked gives CPU back to the bundle, not to the node.
	c.Submit(Task{ID: tid("t4"), Demand: cpu(2), Group: gid("g"), Bundle: 0})
	c.Blocked(tid("t2"))
	mustAvail(t, c, "a", cpu(6))
	mustGroups(t, c, nil, "t4@a")
	c.Unblocked(tid("t2")) // the bundle is overcommitted now
	c.Finished(tid("t4"))
	c.Submit(Task{ID: tid("t5"), Demand: cpu(2), Group: gid("g"), Bundle: 0})
	mustGroups(t, c, nil)
	c.Finished(tid("t2"))
	mustGroups(t, c, nil, "t5@a")
	mustAvail(t, c, "a", cpu(6))
	if got := c.RunningTasks("a"); !reflect.DeepEqual(got, []TaskID{tid("t5")}) {
		t.Fatalf("RunningTasks(a) = %v", got)
	}
}

func TestGroupAnyBundle(t *testing.T) {
	c := New()
	c.AddNode("a", cpu(4), nil)
	c.AddNode("b", cpu(4), nil)
	c.CreateGroup(Group{ID: gid("g"), Bundles: []Resources{cpu(1), cpu(2)}, Strategy: Spread})
	for _, id := range []TaskID{tid("x"), tid("y"), tid("z"), tid("w")} {
		c.Submit(Task{ID: id, Demand: cpu(1), Group: gid("g"), Bundle: -1})
	}
	c.Submit(Task{ID: tid("wide"), Demand: cpu(3), Group: gid("g"), Bundle: -1})
	p := mustGroups(t, c, []string{"g@a,b"}, "x@a", "y@b", "z@b")
	if len(p.Infeasible) != 1 || p.Infeasible[0].Reason !=
		"task needs CPU: 3 but no bundle of placement group g can ever provide it (bundle 0 has CPU: 1; bundle 1 has CPU: 2)" {
		t.Fatalf("Infeasible = %v", p.Infeasible)
	}
	c.Finished(tid("x"))
	mustGroups(t, c, nil, "w@a")
}

func TestRemoveGroup(t *testing.T) {
	c := New()
	c.AddNode("a", cpu(4), nil)
	c.CreateGroup(Group{ID: gid("g"), Bundles: bundles(1, cpu(2)), Strategy: Pack})
	c.Submit(Task{ID: tid("r2"), Demand: cpu(1), Group: gid("g")})
	c.Submit(Task{ID: tid("r1"), Demand: cpu(1), Group: gid("g")})
	c.Submit(Task{ID: tid("q1"), Demand: cpu(1), Group: gid("g")})
	c.Submit(Task{ID: tid("d1"), Demand: cpu(1), Group: gid("g"), Deps: []ObjectKey{okey("o")}})
	c.Submit(Task{ID: tid("plain"), Demand: cpu(1)})
	mustGroups(t, c, []string{"g@a"}, "r2@a", "r1@a", "plain@a")
	mustAvail(t, c, "a", cpu(1))
	if c.Queued() != 2 {
		t.Fatalf("Queued = %d", c.Queued())
	}
	if got := c.RemoveGroup(gid("g")); !reflect.DeepEqual(got, []TaskID{tid("d1"), tid("q1"), tid("r1"), tid("r2")}) {
		t.Fatalf("RemoveGroup = %v", got)
	}
	mustAvail(t, c, "a", cpu(3))
	if c.Queued() != 0 || c.GroupPlaced(gid("g")) || c.RemoveGroup(gid("g")) != nil {
		t.Fatal("group or tasks left")
	}
	if got := c.RunningTasks("a"); !reflect.DeepEqual(got, []TaskID{tid("plain")}) {
		t.Fatalf("RunningTasks = %v", got)
	}
	c.Finished(tid("r1")) // forgotten: no-op
	c.ObjectReady(okey("o"))
	mustAvail(t, c, "a", cpu(3))
	// A task naming the removed group is infeasible; the ID can be reused.
	c.Submit(Task{ID: tid("r1"), Demand: cpu(1), Group: gid("g")})
	p := mustGroups(t, c, nil)
	if len(p.Infeasible) != 1 || p.Infeasible[0].Task != tid("r1") {
		t.Fatalf("Infeasible = %v", p.Infeasible)
	}
	c.CreateGroup(Group{ID: gid("g"), Bundles: bundles(1, cpu(3)), Strategy: StrictPack})
	c.Submit(Task{ID: tid("r1"), Demand: cpu(3), Group: gid("g")})
	mustGroups(t, c, []string{"g@a"}, "r1@a")
}

func TestUnknownGroupInfeasible(t *testing.T) {
	c := New()
	c.AddNode("a", cpu(4), nil)
	c.Submit(Task{ID: tid("t"), Demand: cpu(1), Group: gid("nope"), Bundle: -1})
	p := mustGroups(t, c, nil)
	want := []Infeasible{{Task: tid("t"), Reason: "task needs CPU: 1 in placement group nope but that group does not exist (never created, or removed)"}}
	if !reflect.DeepEqual(p.Infeasible, want) || c.Queued() != 0 {
		t.Fatalf("Infeasible = %v, want %v", p.Infeasible, want)
	}
}

func TestRemoveNodeRequeuesGroup(t *testing.T) {
	c := New()
	for _, id := range []NodeID{"a", "b", "c"} {
		c.AddNode(id, cpu(2), nil)
	}
	c.CreateGroup(Group{ID: gid("spread"), Bundles: bundles(2, cpu(1)), Strategy: StrictSpread})
	c.CreateGroup(Group{ID: gid("pack"), Bundles: bundles(2, cpu(0.5)), Strategy: StrictPack})
	c.Submit(Task{ID: tid("t0"), Demand: cpu(1), Group: gid("spread"), Bundle: 0})
	c.Submit(Task{ID: tid("t1"), Demand: cpu(1), Group: gid("spread"), Bundle: 1})
	c.Submit(Task{ID: tid("p"), Demand: cpu(0.5), Group: gid("pack"), Bundle: -1})
	mustGroups(t, c, []string{"spread@a,b", "pack@a,a"}, "t0@a", "t1@b", "p@a")

	if got := c.RemoveNode("a"); !reflect.DeepEqual(got, []TaskID{tid("p"), tid("t0")}) {
		t.Fatalf("RemoveNode(a) = %v", got)
	}
	if c.GroupPlaced(gid("spread")) || c.GroupPlaced(gid("pack")) {
		t.Fatal("groups still placed")
	}
	// spread keeps bundle 1 on b and gets bundle 0 on a node other than b;
	// pack goes wholly elsewhere. t1 keeps running in its bundle.
	c.Submit(Task{ID: tid("t0"), Demand: cpu(1), Group: gid("spread"), Bundle: 0})
	mustGroups(t, c, []string{"spread@c,b", "pack@b,b"}, "t0@c")
	mustAvail(t, c, "b", cpu(0))
	mustAvail(t, c, "c", cpu(1))
	if got := c.RunningTasks("b"); !reflect.DeepEqual(got, []TaskID{tid("t1")}) {
		t.Fatalf("RunningTasks(b) = %v", got)
	}

	// With no distinct node left, a group once placed waits (it is not
	// dropped as infeasible) until a node joins.
	if got := c.RemoveNode("c"); !reflect.DeepEqual(got, []TaskID{tid("t0")}) {
		t.Fatalf("RemoveNode(c) = %v", got)
	}
	if p := mustGroups(t, c, nil); p.GroupsInfeasible != nil {
		t.Fatalf("GroupsInfeasible = %v", p.GroupsInfeasible)
	}
	c.AddNode("d", cpu(2), nil)
	mustGroups(t, c, []string{"spread@d,b"})
	if got := c.RemoveGroup(gid("spread")); !reflect.DeepEqual(got, []TaskID{tid("t1")}) {
		t.Fatalf("RemoveGroup = %v", got)
	}
	mustAvail(t, c, "b", cpu(1))
	mustAvail(t, c, "d", cpu(2))
}

func TestGroupsDeterministic(t *testing.T) {
	run := func() string {
		c := New()
		for i := 0; i < 5; i++ {
			c.AddNode(NodeID(fmt.Sprint("n", i)), cpu(float64(i+2)), nil)
		}
		var b strings.Builder
		for round := 0; round < 30; round++ {
			g := gid(fmt.Sprint("g", round))
			c.CreateGroup(Group{ID: g, Bundles: bundles(round%4+1, cpu(float64(round%3+1)*0.5)), Strategy: Strategy(round % 4)})
			for i := 0; i < 3; i++ {
				c.Submit(Task{ID: tid(fmt.Sprint(g, "t", i)), Demand: cpu(0.5), Group: g, Bundle: i%2 - 1})
			}
			p := c.Schedule()
			fmt.Fprintln(&b, groupsOf(p), p.GroupsInfeasible, place(p), p.Infeasible)
			if round%3 == 2 {
				fmt.Fprintln(&b, c.RemoveGroup(gid(fmt.Sprint("g", round-2))))
			}
			if round == 15 {
				fmt.Fprintln(&b, c.RemoveNode("n3"))
			}
		}
		return b.String()
	}
	first := run()
	for i := 0; i < 5; i++ {
		if got := run(); got != first {
			t.Fatalf("run %d differs:\n%s\nvs\n%s", i, got, first)
		}
	}
}

// BenchmarkGroupCreateRemove creates a one-bundle group, places it and
// removes it again.
func BenchmarkGroupCreateRemove(b *testing.B) {
	c := New()
	for i := 0; i < 8; i++ {
		c.AddNode(NodeID(fmt.Sprint("n", i)), Resources{CPU: 16 * Unit, Memory: 64 * gib}, nil)
	}
	g := Group{ID: gid("g"), Bundles: []Resources{cpu(0.001)}, Strategy: Pack}
	b.ReportAllocs()
	for b.Loop() {
		c.CreateGroup(g)
		if p := c.Schedule(); len(p.Groups) != 1 {
			b.Fatalf("placed %v", p.Groups)
		}
		c.RemoveGroup(gid("g"))
	}
}
