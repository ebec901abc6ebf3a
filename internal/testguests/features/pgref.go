//go:build wasip1

package main

import (
	"errors"
	"fmt"
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
	return nil
}
