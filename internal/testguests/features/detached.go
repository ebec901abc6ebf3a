//go:build wasip1

package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wasmfabric/fabric/sdk"
)

func init() {
	moreCases["namespaces"] = namespaces
	moreCases["detached_create"] = detachedCreate
	moreCases["detached_use"] = detachedUse
	moreCases["names_create"] = namesCreate
	moreCases["names_use"] = namesUse
	moreCases["names_kill"] = namesKill
	moreCases["names_gone"] = namesGone
}

// Keeper is an actor whose state outlives the job that made it.
type Keeper struct{ total int }

var keeperClass = sdk.Actor("Keeper", func() (*Keeper, error) { return &Keeper{}, nil })

var keeperAdd = sdk.NewMethod1(keeperClass, "add", func(k *Keeper, n int) (int, error) {
	k.total += n
	fmt.Printf("keeper holds %d\n", k.total)
	return k.total, nil
})

// namespaces: a named actor in a namespace is found there and not among
// the job's own names; the list shows it, and a detached actor, with
// their namespaces.
func namespaces() error {
	h := keeperClass.Options(sdk.Name("ns-keeper"), sdk.Namespace("team")).Remote()
	if _, err := keeperAdd.Remote(h, 1).Get(); err != nil {
		return err
	}
	_, errOwn := sdk.GetActor(keeperClass, "ns-keeper")
	found, errNS := sdk.GetActor(keeperClass, "ns-keeper", sdk.InNamespace("team"))
	check("actor_found_in_namespace", errOwn != nil && errNS == nil && found.ID() == h.ID(), fmt.Sprint(errOwn, errNS))
	d := keeperClass.Options(sdk.Name("ns-detached"), sdk.Detached()).Remote()
	v, err := keeperAdd.Remote(d, 2).Get()
	list, lerr := sdk.ListNamedActors()
	seen := map[string]string{}
	for _, a := range list {
		seen[a.Name] = fmt.Sprintf("%s/%v/%s", a.Namespace, a.Detached, a.Class)
	}
	check("named_actors_listed", err == nil && v == 2 && lerr == nil && seen["ns-keeper"] == "team/false/Keeper" && seen["ns-detached"] == "default/true/Keeper", fmt.Sprint(list, err, lerr))
	bad := keeperAdd.Remote(keeperClass.Options(sdk.Detached()).Remote(), 1)
	_, err = bad.Get()
	check("detached_needs_a_name", err != nil && strings.Contains(err.Error(), "a detached actor needs a name"), err)
	pg, err := sdk.NewPlacementGroup([]sdk.Bundle{{"CPU": 0.25}}, "PACK", sdk.GroupName("ns-pg"), sdk.GroupDetached())
	rerr := pg.Ready(sdk.Timeout(10 * time.Second))
	tab, terr := sdk.PlacementGroupTable()
	detached := false
	for _, g := range tab {
		detached = detached || g.Name == "ns-pg" && g.Detached && g.State == "created"
	}
	check("detached_group_listed", err == nil && rerr == nil && terr == nil && detached, fmt.Sprint(tab, err, rerr, terr))
	if err := sdk.RemovePlacementGroup(pg); err != nil {
		return err
	}
	return sdk.Kill(d, true)
}

// detachedCreate makes a detached actor that a later job uses.
func detachedCreate() error {
	h := keeperClass.Options(sdk.Name("keeper"), sdk.Namespace("svc"), sdk.Detached()).Remote()
	v, err := keeperAdd.Remote(h, 5).Get()
	pg, perr := sdk.NewPlacementGroup([]sdk.Bundle{{"CPU": 0.25}}, "PACK", sdk.GroupName("keeper-pg"), sdk.GroupDetached())
	rerr := pg.Ready(sdk.Timeout(10 * time.Second))
	check("detached_created", err == nil && v == 5 && perr == nil && rerr == nil, fmt.Sprint(v, err, perr, rerr))
	return nil
}

// detachedUse, in a later job: the actor is there with its state; it is
// listed; killed, its name is free.
func detachedUse() error {
	h, err := sdk.GetActor(keeperClass, "keeper", sdk.InNamespace("svc"))
	if err != nil {
		check("detached_outlives_job", false, err)
		return nil
	}
	v, err := keeperAdd.Remote(h, 1).Get()
	check("detached_outlives_job", err == nil && v == 6, fmt.Sprint(v, err))
	list, err := sdk.ListNamedActors()
	listed := false
	for _, a := range list {
		listed = listed || a.Name == "keeper" && a.Namespace == "svc" && a.Detached && a.State == "alive"
	}
	check("detached_listed", err == nil && listed, fmt.Sprint(list, err))
	pg, err := sdk.GetPlacementGroup("keeper-pg")
	sq, serr := square.Options(sdk.InPlacementGroup(pg, 0), sdk.CPUs(0.25)).Remote(4).Get()
	check("detached_group_outlives_job", err == nil && serr == nil && sq == 16, fmt.Sprint(sq, err, serr))
	rmerr := sdk.RemovePlacementGroup(pg)
	_, err = sdk.GetPlacementGroup("keeper-pg")
	check("detached_group_removed", rmerr == nil && err != nil, fmt.Sprint(rmerr, err))
	kerr := sdk.Kill(h, true)
	_, err = sdk.GetActor(keeperClass, "keeper", sdk.InNamespace("svc"))
	_, cerr := keeperAdd.Remote(h, 1).Get()
	check("detached_killed", kerr == nil && err != nil && errors.Is(cerr, sdk.ErrActorDied), fmt.Sprint(kerr, err, cerr))
	return nil
}

// namesCreate makes a detached actor in namespace "xnode" that jobs on
// other nodes use (TestNamesAcrossNodes).
func namesCreate() error {
	h := keeperClass.Options(sdk.Name("shared"), sdk.Namespace("xnode"), sdk.Detached()).Remote()
	v, err := keeperAdd.Remote(h, 5).Get()
	check("names_created", err == nil && v == 5, fmt.Sprint(v, err))
	pg, err := sdk.NewPlacementGroup([]sdk.Bundle{{"CPU": 0.25}}, "PACK", sdk.GroupName("xnode-pg"), sdk.GroupDetached())
	if err == nil {
		err = pg.Ready(sdk.Timeout(10 * time.Second))
	}
	check("names_group_created", err == nil, err)
	return nil
}

// namesUse, in a job on another node: the actor is found through the
// control plane and called there; its name is taken in the cluster, and
// get_if_exists gives the same actor.
func namesUse() error {
	h, err := sdk.GetActor(keeperClass, "shared", sdk.InNamespace("xnode"))
	if err != nil {
		check("names_found_on_another_node", false, err)
		return nil
	}
	v, err := keeperAdd.Remote(h, 1).Get()
	check("names_found_on_another_node", err == nil && v == 6, fmt.Sprint(v, err))
	_, err = keeperAdd.Remote(keeperClass.Options(sdk.Name("shared"), sdk.Namespace("xnode"), sdk.Detached()).Remote(), 1).Get()
	check("names_taken_in_the_cluster", err != nil && strings.Contains(err.Error(), `an actor named "shared" already exists in namespace "xnode", on node`), err)
	same := keeperClass.Options(sdk.Name("shared"), sdk.Namespace("xnode"), sdk.Detached(), sdk.GetIfExists()).Remote()
	v, err = keeperAdd.Remote(same, 1).Get()
	check("names_get_if_exists_across_nodes", err == nil && same.ID() == h.ID() && v == 7, fmt.Sprint(v, err))
	pg, err := sdk.NewPlacementGroup([]sdk.Bundle{{"CPU": 0.25}}, "PACK", sdk.GroupName("xnode-pg"), sdk.GroupDetached())
	if err == nil {
		err = pg.Ready(sdk.Timeout(10 * time.Second))
	}
	check("names_group_name_taken_in_the_cluster", err != nil && strings.Contains(err.Error(), `the name "xnode-pg" is taken by placement group`), err)
	kerr := sdk.Kill(h, true)
	check("names_kill_elsewhere_refused", kerr != nil && strings.Contains(kerr.Error(), "killing an actor of another node is not supported yet"), kerr)
	_, err = sdk.GetActor(keeperClass, "nobody", sdk.InNamespace("xnode"))
	check("names_unknown_in_the_cluster", err != nil && strings.Contains(err.Error(), `no actor named "nobody" in namespace "xnode" in the cluster`), err)
	return nil
}

// namesKill, in a job on the actor's node: kills it, which frees its
// name in the cluster.
func namesKill() error {
	h, err := sdk.GetActor(keeperClass, "shared", sdk.InNamespace("xnode"))
	if err == nil {
		err = sdk.Kill(h, true)
	}
	check("names_killed", err == nil, err)
	pg, err := sdk.GetPlacementGroup("xnode-pg")
	if err == nil {
		err = sdk.RemovePlacementGroup(pg)
	}
	check("names_group_removed", err == nil, err)
	return nil
}

// namesGone, in a job on another node: the killed actor's name is free
// in the cluster; a new actor takes it.
func namesGone() error {
	_, err := sdk.GetActor(keeperClass, "shared", sdk.InNamespace("xnode"))
	check("names_freed_in_the_cluster", err != nil && strings.Contains(err.Error(), "no actor named"), err)
	h := keeperClass.Options(sdk.Name("shared"), sdk.Namespace("xnode")).Remote()
	v, err := keeperAdd.Remote(h, 3).Get()
	check("names_taken_again", err == nil && v == 3, fmt.Sprint(v, err))
	pg, err := sdk.NewPlacementGroup([]sdk.Bundle{{"CPU": 0.25}}, "PACK", sdk.GroupName("xnode-pg"), sdk.GroupDetached())
	if err == nil {
		err = pg.Ready(sdk.Timeout(10 * time.Second))
	}
	check("names_group_name_taken_again", err == nil, err)
	if err == nil {
		err = sdk.RemovePlacementGroup(pg)
	}
	return err
}
