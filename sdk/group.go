package sdk

import (
	"errors"
	"fmt"
	"math"

	"github.com/wasmfabric/fabric/internal/abi"
)

// Bundle is one set of resources a placement group reserves: "CPU",
// "GPU", "memory" (bytes) or custom resource names, to amounts.
type Bundle map[string]float64

// Placement group strategies, as Ray names them.
const (
	Pack         = "PACK"          // as few nodes as possible
	Spread       = "SPREAD"        // as many distinct nodes as possible
	StrictPack   = "STRICT_PACK"   // all bundles on one node
	StrictSpread = "STRICT_SPREAD" // every bundle on its own node
)

// PlacementGroup is a set of bundles reserved together on the cluster's
// nodes; tasks and actors run inside its bundles with InPlacementGroup.
type PlacementGroup struct {
	id  ObjectID
	err error
}

// GroupOption sets a property of a placement group.
type GroupOption func(*abi.GroupSpec)

// GroupName names a placement group: GetPlacementGroup finds it by name,
// and PlacementGroupTable lists it under it. A name is unique among the
// job's groups; a second group with a name in use fails (its Ready says
// why).
func GroupName(name string) GroupOption { return func(s *abi.GroupSpec) { s.Name = name } }

// GroupDetached keeps the group when its job ends (Ray's
// placement_group(lifetime="detached")), until it is removed: later jobs
// on the node find it by name (GetPlacementGroup), run tasks and actors in
// it, and remove it. Its name is unique among the node's detached groups.
func GroupDetached() GroupOption {
	return func(s *abi.GroupSpec) { s.Lifetime = abi.LifetimeDetached }
}

// NewPlacementGroup reserves bundles with a strategy (Pack, Spread,
// StrictPack or StrictSpread). It returns at once; Ready waits until the
// bundles are placed.
func NewPlacementGroup(bundles []Bundle, strategy string, opts ...GroupOption) (PlacementGroup, error) {
	spec := abi.GroupSpec{Strategy: strategy}
	for _, o := range opts {
		o(&spec)
	}
	if len(bundles) == 0 {
		err := errors.New("fabric: a placement group needs at least one bundle")
		return PlacementGroup{err: err}, err
	}
	for i, b := range bundles {
		for k, v := range b {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || k == "" {
				err := fmt.Errorf("fabric: bundle %d: %q amount %v is not a non-negative amount", i, k, v)
				return PlacementGroup{err: err}, err
			}
		}
		spec.Bundles = append(spec.Bundles, map[string]float64(b))
	}
	raw, err := encMode.Marshal(spec)
	if err != nil {
		return PlacementGroup{err: err}, err
	}
	id, err := host.groupCreate(raw)
	if err != nil {
		return PlacementGroup{err: err}, err
	}
	return PlacementGroup{id: id}, nil
}

// ID returns the group's ID.
func (pg PlacementGroup) ID() ObjectID { return pg.id }

// Ready waits until the group's bundles are placed, without bound unless
// Timeout says otherwise. Past the timeout it returns ErrGetTimeout; a
// group that can never be placed returns an error saying why.
func (pg PlacementGroup) Ready(opts ...GetOption) error {
	if pg.err != nil {
		return pg.err
	}
	timedOut, err := host.groupWait(pg.id, getOpts(opts).timeoutMs)
	if err != nil {
		return err
	}
	if timedOut {
		return ErrGetTimeout
	}
	return nil
}

// pgReady is the task behind ReadyRef: it runs, taking nothing, once its
// group is placed.
var pgReady = Task0("fabric.pg_ready", func() (bool, error) { return true, nil }, CPUs(0))

// ReadyRef returns a reference that becomes ready, holding true, once the
// group is placed, for Wait and WaitAny alongside other references (Ray's
// pg.ready()). It holds an error when the group can never be placed or is
// removed first. Like Ray's, it is a task that runs in the group and takes
// no resources.
func (pg PlacementGroup) ReadyRef() Ref[bool] {
	if pg.err != nil {
		return Ref[bool]{err: pg.err}
	}
	return pgReady.Options(InPlacementGroup(pg, -1)).Remote()
}

// PlacementGroupInfo is one row of PlacementGroupTable. State is
// "pending" (waiting for room), "created" (its bundles are reserved, on
// Nodes, one per bundle) or "failed" (Reason says why).
type PlacementGroupInfo struct {
	Group                         PlacementGroup
	Name, Strategy, State, Reason string
	Bundles                       []Bundle
	Nodes                         []string
	Detached                      bool // it outlives its job (GroupDetached)
}

// PlacementGroupTable lists the job's placement groups and the node's
// detached ones, with their states, as Ray's placement_group_table.
// Removed groups are not listed.
func PlacementGroupTable() ([]PlacementGroupInfo, error) {
	b, err := host.groupTable()
	if err != nil {
		return nil, err
	}
	var tab abi.GroupTable
	if err := decMode.Unmarshal(b, &tab); err != nil {
		return nil, fmt.Errorf("fabric: malformed placement group table: %w", err)
	}
	out := make([]PlacementGroupInfo, len(tab.Groups))
	for i, g := range tab.Groups {
		info := PlacementGroupInfo{Name: g.Name, Strategy: g.Strategy, State: g.State, Reason: g.Reason, Nodes: g.Nodes, Detached: g.Detached}
		copy(info.Group.id[:], g.ID)
		for _, bd := range g.Bundles {
			info.Bundles = append(info.Bundles, Bundle(bd))
		}
		out[i] = info
	}
	return out, nil
}

// GetPlacementGroup returns the job's placement group named name, or the
// node's detached one (Ray's get_placement_group).
func GetPlacementGroup(name string) (PlacementGroup, error) {
	tab, err := PlacementGroupTable()
	if err != nil {
		return PlacementGroup{err: err}, err
	}
	for _, g := range tab {
		if g.Name == name {
			return g.Group, nil
		}
	}
	err = fmt.Errorf("fabric: no placement group named %q in this job", name)
	return PlacementGroup{err: err}, err
}

// RemovePlacementGroup frees a group's reservations; tasks and actors
// running in it are stopped.
func RemovePlacementGroup(pg PlacementGroup) error {
	if pg.err != nil {
		return pg.err
	}
	return host.groupRemove(pg.id)
}

// InPlacementGroup runs a task or an actor in bundle of pg (-1: any of
// its bundles).
func InPlacementGroup(pg PlacementGroup, bundle int) Option {
	return func(o *abi.Options) {
		o.Group = append([]byte(nil), pg.id[:]...)
		if bundle >= 0 {
			b := bundle
			o.Bundle = &b
		}
	}
}
