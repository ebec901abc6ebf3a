//go:build wasip1

package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wasmfabric/fabric/sdk"
)

func init() { moreCases["pg_ready_ref"] = pgReadyRef }

// pgReadyRef: a placement group's readiness as a reference that Wait
// takes with others, and the error it holds for a group that can never
// be placed.
func pgReadyRef() error {
	pg, err := sdk.NewPlacementGroup([]sdk.Bundle{{"CPU": 0.5}}, sdk.Pack)
	if err != nil {
		return err
	}
	other := sleepy.Remote(2000)
	ready, _, err := sdk.WaitAny([]sdk.AnyRef{other, pg.ReadyRef()}, 1, sdk.Timeout(10*time.Second))
	ok := err == nil && len(ready) == 1
	if ok {
		v, err := sdk.Get(ready[0].(sdk.Ref[bool]))
		ok = err == nil && v
	}
	check("pg_ready_ref_in_wait", ok, fmt.Sprint(ready, err))
	never, err := sdk.NewPlacementGroup([]sdk.Bundle{{"CPU": 1000}}, sdk.Pack)
	if err != nil {
		return err
	}
	_, err = never.ReadyRef().Get(sdk.Timeout(10 * time.Second))
	check("pg_ready_ref_never", err != nil && !errors.Is(err, sdk.ErrGetTimeout), err)
	_ = sdk.RemovePlacementGroup(pg)
	_ = sdk.RemovePlacementGroup(never)
	return nil
}

func init() { moreCases["pg_named"] = pgNamed }

// pgNamed: placement groups with names, found by name, listed with their
// states; a second group with a name in use fails.
func pgNamed() error {
	pg, err := sdk.NewPlacementGroup([]sdk.Bundle{{"CPU": 0.5}}, sdk.Pack, sdk.GroupName("trainers"))
	if err != nil {
		return err
	}
	if err := pg.Ready(sdk.Timeout(10 * time.Second)); err != nil {
		return err
	}
	found, err := sdk.GetPlacementGroup("trainers")
	check("pg_found_by_name", err == nil && found.ID() == pg.ID(), err)
	dup, _ := sdk.NewPlacementGroup([]sdk.Bundle{{"CPU": 0.1}}, sdk.Pack, sdk.GroupName("trainers"))
	err = dup.Ready(sdk.Timeout(10 * time.Second))
	check("pg_name_taken", err != nil && strings.Contains(err.Error(), `the name "trainers" is taken`), err)
	never, _ := sdk.NewPlacementGroup([]sdk.Bundle{{"CPU": 1000}}, sdk.Spread, sdk.GroupName("never"))
	_ = never.Ready(sdk.Timeout(10 * time.Second))
	tab, err := sdk.PlacementGroupTable()
	states := map[string]string{}
	for _, g := range tab {
		states[g.Name] = g.State
		if g.Name == "trainers" {
			fmt.Printf("pg trainers: %s on %v, bundles %v\n", g.State, len(g.Nodes), g.Bundles)
		}
	}
	check("pg_table", err == nil && len(tab) >= 3 && states["trainers"] == "created" && states["never"] == "failed", fmt.Sprint(tab, err))
	_ = sdk.RemovePlacementGroup(pg)
	_, err = sdk.GetPlacementGroup("trainers")
	again, err2 := sdk.NewPlacementGroup([]sdk.Bundle{{"CPU": 0.1}}, sdk.Pack, sdk.GroupName("trainers"))
	if err2 == nil {
		err2 = again.Ready(sdk.Timeout(10 * time.Second))
	}
	check("pg_name_free_after_removal", err != nil && err2 == nil, fmt.Sprint(err, err2))
	for _, g := range []sdk.PlacementGroup{dup, never, again} {
		_ = sdk.RemovePlacementGroup(g)
	}
	return nil
}
