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
