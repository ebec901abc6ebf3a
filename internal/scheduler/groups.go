package scheduler

import (
	"errors"
	"sort"
	"strconv"
	"strings"
)

// GroupID names a placement group.
type GroupID [IDSize]byte

// Strategy says how a group's bundles spread over nodes.
type Strategy uint8

const (
	// Pack puts the bundles on as few nodes as possible, best effort: all on
	// one node when one has room, else one by one preferring nodes the group
	// already uses.
	Pack Strategy = iota
	// Spread puts the bundles on as many distinct nodes as possible, best
	// effort: one by one preferring nodes the group does not use yet.
	Spread
	// StrictPack puts all bundles on one node, or does not place the group.
	StrictPack
	// StrictSpread puts every bundle on a distinct node, or does not place
	// the group.
	StrictSpread
)

var strategyNames = [...]string{Pack: "PACK", Spread: "SPREAD", StrictPack: "STRICT_PACK", StrictSpread: "STRICT_SPREAD"}

// String returns the strategy's name as Ray spells it: "PACK", "SPREAD",
// "STRICT_PACK" or "STRICT_SPREAD"; "Strategy(N)" for an unknown value.
func (s Strategy) String() string {
	if int(s) < len(strategyNames) {
		return strategyNames[s]
	}
	return "Strategy(" + strconv.Itoa(int(s)) + ")"
}

// ParseStrategy returns the strategy named s, a name that String returns,
// in any case. The error for any other string lists the valid names.
func ParseStrategy(s string) (Strategy, error) {
	for i, name := range strategyNames {
		if strings.EqualFold(s, name) {
			return Strategy(i), nil
		}
	}
	return 0, errors.New("scheduler: unknown placement strategy " + strconv.Quote(s) +
		" (valid: " + strings.Join(strategyNames[:], ", ") + ")")
}

// Group is a set of resource bundles reserved together, as a Ray placement
// group. Schedule places a group atomically, all bundles or none, by its
// Strategy; each bundle's resources are then reserved on its node (hidden
// from ordinary tasks) and become the bundle's own pool, which only tasks
// naming the group (Task.Group, Task.Bundle) use.
type Group struct {
	ID       GroupID
	Bundles  []Resources
	Strategy Strategy
}

// GroupPlacement says that a placement group was placed: Nodes[i] holds
// bundle i.
type GroupPlacement struct {
	Group GroupID
	Nodes []NodeID
}

// GroupInfeasible says that a placement group was dropped because the nodes
// of the cluster can never hold it; Reason says why, for people.
type GroupInfeasible struct {
	Group  GroupID
	Reason string
}

type group struct {
	id       GroupID
	strategy Strategy
	bundles  []Resources
	nodes    []*node     // per bundle; nil while not placed
	used     []Resources // per bundle: what its running tasks hold
	seq      uint64      // creation order
	queued   bool        // in Core.gqueue
	placed   bool        // placed at least once; never dropped as infeasible since
}

// CreateGroup queues a placement group; Schedule places queued groups in
// creation order. Creating an ID that exists is ignored. The Core copies g.
func (c *Core) CreateGroup(g Group) {
	if _, ok := c.groups[g.ID]; ok {
		return
	}
	c.gseq++
	gr := &group{
		id:       g.ID,
		strategy: g.Strategy,
		bundles:  make([]Resources, len(g.Bundles)),
		nodes:    make([]*node, len(g.Bundles)),
		used:     make([]Resources, len(g.Bundles)),
		seq:      c.gseq,
	}
	for i, b := range g.Bundles {
		gr.bundles[i] = b.clone()
	}
	c.groups[g.ID] = gr
	c.requeueGroup(gr)
}

// RemoveGroup removes a placement group and frees its reservations. It also
// removes the tasks naming the group, and returns their IDs, sorted: those
// that were running (the caller fails them) and those not placed yet.
// Removing an unknown group returns nil.
func (c *Core) RemoveGroup(id GroupID) []TaskID {
	g := c.groups[id]
	if g == nil {
		return nil
	}
	var ids []TaskID
	for tid, ts := range c.groupTasks[id] {
		ids = append(ids, tid)
		if ts.status == statusRunning {
			delete(ts.node.running, tid)
		} else {
			c.unqueue(ts)
		}
		delete(c.tasks, tid)
	}
	delete(c.groupTasks, id)
	sort.Slice(ids, func(i, j int) bool { return compareIDs(ids[i], ids[j]) < 0 })
	for i, n := range g.nodes {
		if n != nil {
			n.used = n.used.Sub(g.bundles[i])
			delete(n.groups, id)
		}
	}
	if g.queued {
		for i, q := range c.gqueue {
			if q == g {
				c.gqueue = append(c.gqueue[:i], c.gqueue[i+1:]...)
				break
			}
		}
	}
	delete(c.groups, id)
	return ids
}

// GroupPlaced reports whether the group exists and all its bundles are
// placed.
func (c *Core) GroupPlaced(id GroupID) bool {
	g := c.groups[id]
	return g != nil && !g.queued
}

// GroupNodes returns the nodes holding the group's bundles, Nodes[i] for
// bundle i. The bool is false, with nil, for a group unknown or not placed.
func (c *Core) GroupNodes(id GroupID) ([]NodeID, bool) {
	g := c.groups[id]
	if g == nil || g.queued {
		return nil, false
	}
	return nodeIDs(g.nodes), true
}

func nodeIDs(ns []*node) []NodeID {
	ids := make([]NodeID, len(ns))
	for i, n := range ns {
		ids[i] = n.id
	}
	return ids
}

// requeueGroup puts g into the group queue in creation order.
func (c *Core) requeueGroup(g *group) {
	if g.queued {
		return
	}
	g.queued = true
	i := sort.Search(len(c.gqueue), func(i int) bool { return c.gqueue[i].seq > g.seq })
	c.gqueue = append(c.gqueue, nil)
	copy(c.gqueue[i+1:], c.gqueue[i:])
	c.gqueue[i] = g
}

// dropBundles unplaces the bundles reserved on n, which is leaving, and
// requeues their groups. The tasks running on n are already forgotten.
func (c *Core) dropBundles(n *node) {
	for _, g := range n.groups {
		for i, bn := range g.nodes {
			if bn == n {
				g.nodes[i] = nil
				g.used[i] = Resources{}
			}
		}
		c.requeueGroup(g)
	}
	n.groups = nil
}

// scheduleGroups places queued groups in order until one does not fit now,
// dropping those that can never be placed.
func (c *Core) scheduleGroups(plan *Plan) {
	for len(c.gqueue) > 0 {
		g := c.gqueue[0]
		if !g.placed {
			if reason, ok := c.groupFeasible(g); !ok {
				plan.GroupsInfeasible = append(plan.GroupsInfeasible, GroupInfeasible{Group: g.id, Reason: reason})
				// Never placed: nothing reserved, nothing running. Its
				// queued tasks are reported infeasible when their turn comes.
				g.queued = false
				c.gqueue = c.gqueue[1:]
				delete(c.groups, g.id)
				continue
			}
		}
		assign, ok := c.fitGroup(g)
		if !ok {
			return // head of line: later groups wait, to keep creation order
		}
		for i, n := range assign {
			if g.nodes[i] != nil {
				continue
			}
			g.nodes[i] = n
			n.used = n.used.Add(g.bundles[i])
			if n.groups == nil {
				n.groups = make(map[GroupID]*group)
			}
			n.groups[g.id] = g
		}
		g.placed = true
		g.queued = false
		c.gqueue = c.gqueue[1:]
		plan.Groups = append(plan.Groups, GroupPlacement{Group: g.id, Nodes: nodeIDs(g.nodes)})
	}
}

// fitGroup chooses nodes for the group's unplaced bundles by its strategy,
// against what the nodes have available now. It returns a node per bundle
// (the placed ones unchanged), or false when the group does not fit now.
func (c *Core) fitGroup(g *group) ([]*node, bool) {
	assign := append([]*node(nil), g.nodes...)
	var missing []int
	var sum Resources
	used := make(map[*node]bool)
	for i, n := range assign {
		if n == nil {
			missing = append(missing, i)
			sum = sum.Add(g.bundles[i])
		} else {
			used[n] = true
		}
	}
	if len(missing) == 0 {
		return assign, true
	}
	// onOne puts all missing bundles on the first candidate with room.
	onOne := func(candidates []*node) bool {
		for _, n := range candidates {
			if fitsAvail(sum, n) {
				for _, i := range missing {
					assign[i] = n
				}
				return true
			}
		}
		return false
	}
	all := make([]*node, len(c.order))
	for i, id := range c.order {
		all[i] = c.nodes[id]
	}
	var usedNodes, freshNodes []*node // sorted, each
	split := func() {
		usedNodes, freshNodes = usedNodes[:0], freshNodes[:0]
		for _, n := range all {
			if used[n] {
				usedNodes = append(usedNodes, n)
			} else {
				freshNodes = append(freshNodes, n)
			}
		}
	}
	// oneByOne places the missing bundles in index order, each on the first
	// node with room among the preferred, then the other, nodes.
	oneByOne := func(preferUsed bool) bool {
		extra := make(map[*node]Resources)
		for _, i := range missing {
			split()
			first, second := freshNodes, usedNodes
			if preferUsed {
				first, second = usedNodes, freshNodes
			}
			var chosen *node
			for _, n := range append(append([]*node(nil), first...), second...) {
				if fitsWithin(g.bundles[i], n.total, n.used.Add(extra[n])) {
					chosen = n
					break
				}
			}
			if chosen == nil {
				return false
			}
			assign[i] = chosen
			extra[chosen] = extra[chosen].Add(g.bundles[i])
			used[chosen] = true
		}
		return true
	}
	switch g.strategy {
	case StrictPack:
		if len(used) > 0 {
			split()
			return assign, onOne(usedNodes)
		}
		return assign, onOne(all)
	case Pack:
		split()
		if onOne(append(append([]*node(nil), usedNodes...), freshNodes...)) {
			return assign, true
		}
		return assign, oneByOne(true)
	case Spread:
		return assign, oneByOne(false)
	case StrictSpread:
		split()
		m := matchDistinct(g.bundles, missing, freshNodes, func(b Resources, n *node) bool { return fitsAvail(b, n) })
		if m == nil {
			return assign, false
		}
		for k, i := range missing {
			assign[i] = m[k]
		}
		return assign, true
	}
	return assign, false
}

// matchDistinct assigns each bundle of idx a distinct node among nodes on
// which fits holds, by augmenting paths (Kuhn), bundles in order and nodes in
// the given order, so the result is deterministic: each bundle takes the
// first free node that fits, and earlier bundles move only when a later one
// finds none. It returns the node for
// each entry of idx, or nil when no such assignment exists.
func matchDistinct(bundles []Resources, idx []int, nodes []*node, fits func(Resources, *node) bool) []*node {
	if len(idx) > len(nodes) {
		return nil
	}
	owner := make([]int, len(nodes)) // index into idx, or -1
	for j := range owner {
		owner[j] = -1
	}
	var try func(k int, seen []bool) bool
	try = func(k int, seen []bool) bool {
		// A free node first, so a bundle moves only when it must.
		for j, n := range nodes {
			if owner[j] < 0 && !seen[j] && fits(bundles[idx[k]], n) {
				seen[j] = true
				owner[j] = k
				return true
			}
		}
		for j, n := range nodes {
			if seen[j] || !fits(bundles[idx[k]], n) {
				continue
			}
			seen[j] = true
			if owner[j] < 0 || try(owner[j], seen) {
				owner[j] = k
				return true
			}
		}
		return false
	}
	for k := range idx {
		if !try(k, make([]bool, len(nodes))) {
			return nil
		}
	}
	out := make([]*node, len(idx))
	for j, k := range owner {
		if k >= 0 {
			out[k] = nodes[j]
		}
	}
	return out
}

// groupFeasible checks, against the nodes' totals, whether the group could
// ever be placed. When it cannot, it returns a reason for people and false.
func (c *Core) groupFeasible(g *group) (string, bool) {
	if int(g.strategy) >= len(strategyNames) {
		return "placement group has unknown strategy " + g.strategy.String(), false
	}
	all := make([]*node, len(c.order))
	var totals Resources
	for i, id := range c.order {
		all[i] = c.nodes[id]
		totals = totals.Add(all[i].total)
	}
	fitsTotal := func(b Resources, n *node) bool { return b.Fits(n.total) }
	var sum Resources
	for i, b := range g.bundles {
		sum = sum.Add(b)
		ok := false
		for _, n := range all {
			if fitsTotal(b, n) {
				ok = true
				break
			}
		}
		if !ok {
			return "placement group bundle " + strconv.Itoa(i) + " needs " + b.String() +
				" but no node can ever provide it", false
		}
	}
	n := len(g.bundles)
	switch g.strategy {
	case StrictPack:
		for _, nd := range all {
			if fitsTotal(sum, nd) {
				return "", true
			}
		}
		return "placement group needs " + sum.String() + " on one node (STRICT_PACK) but no node can ever provide it", false
	case StrictSpread:
		if n > len(all) {
			return "placement group needs " + strconv.Itoa(n) + " bundles on distinct nodes (STRICT_SPREAD) but the cluster has " +
				plural(len(all), "node"), false
		}
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		if matchDistinct(g.bundles, idx, all, fitsTotal) == nil {
			return "placement group needs " + strconv.Itoa(n) + " bundles on distinct nodes (STRICT_SPREAD) but no " +
				plural(n, "node") + " of the cluster can hold them", false
		}
	default:
		if !sum.Fits(totals) {
			return "placement group needs " + sum.String() + " in all but the whole cluster has " + totals.String(), false
		}
	}
	return "", true
}

func plural(n int, what string) string {
	s := strconv.Itoa(n) + " " + what
	if n != 1 {
		s += "s"
	}
	return s
}

// pickBundle chooses the bundle for the group class's next task: its own
// bundle, or for Bundle -1 the first, in index order, whose free pool fits
// the demand. Only placed bundles on nodes matching the class's labels and
// affinity count. It returns nil when none has room now.
func (c *Core) pickBundle(cl *class) (*group, int) {
	g := c.groups[cl.group]
	if g == nil {
		return nil, -1
	}
	lo, hi := cl.bundle, cl.bundle+1
	if cl.bundle < 0 {
		lo, hi = 0, len(g.bundles)
	}
	for i := lo; i < hi && i < len(g.bundles); i++ {
		n := g.nodes[i]
		if n == nil || !cl.matches(n) {
			continue
		}
		if fitsWithin(cl.demand, g.bundles[i], g.used[i]) {
			return g, i
		}
	}
	return nil, -1
}

// groupTaskInfeasible checks whether the group class's tasks could ever run:
// the group must exist, the bundle index be valid, and the demand fit the
// bundle (any bundle, for -1). When they cannot, it returns a reason for
// people and false.
func (c *Core) groupTaskInfeasible(cl *class) (string, bool) {
	needs := "task needs " + cl.demand.String()
	name := "placement group " + cl.group.String()
	g := c.groups[cl.group]
	if g == nil {
		return needs + " in " + name + " but that group does not exist (never created, or removed)", false
	}
	if cl.bundle < -1 || cl.bundle >= len(g.bundles) {
		return needs + " in bundle " + strconv.Itoa(cl.bundle) + " of " + name + " but the group has " +
			plural(len(g.bundles), "bundle"), false
	}
	if cl.bundle >= 0 {
		if b := g.bundles[cl.bundle]; !cl.demand.Fits(b) {
			return needs + " but bundle " + strconv.Itoa(cl.bundle) + " of " + name + " has only " + b.String(), false
		}
		return "", true
	}
	for _, b := range g.bundles {
		if cl.demand.Fits(b) {
			return "", true
		}
	}
	var parts []string
	for i, b := range g.bundles {
		parts = append(parts, "bundle "+strconv.Itoa(i)+" has "+b.String())
	}
	return needs + " but no bundle of " + name + " can ever provide it (" + strings.Join(parts, "; ") + ")", false
}
