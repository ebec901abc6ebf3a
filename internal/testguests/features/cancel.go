//go:build wasip1

package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/wasmfabric/fabric/sdk"
)

func init() { moreCases["cancel_cooperative"] = cancelCooperative }

// polite checks sdk.Cancelled between steps and returns when it is set.
var polite = sdk.Task0("polite", func() (int, error) {
	for i := 0; ; i++ {
		if sdk.Cancelled() {
			sdk.Logf("polite saw the cancel and returns")
			return i, sdk.ErrCancelled
		}
		time.Sleep(10 * time.Millisecond)
	}
}, sdk.CPUs(0.25))

// patient blocks in Get on a long task; the cancel ends its Get.
var patient = sdk.Task0("patient", func() (int, error) {
	_, err := sleepy.Remote(60_000).Get()
	if errors.Is(err, sdk.ErrCancelled) {
		sdk.Logf("patient's get returned: %v", err)
	}
	return 0, err
}, sdk.CPUs(0.25))

// stubborn ignores the cancel: it is stopped when its grace ends.
var stubborn = sdk.Task0("stubborn", func() (int, error) {
	for {
		time.Sleep(10 * time.Millisecond)
	}
}, sdk.CPUs(0.25))

// cancelCooperative: a cancel without force asks a running task to
// return; one that does not is stopped a grace period later.
func cancelCooperative() error {
	p, w, s := polite.Remote(), patient.Remote(), stubborn.Remote()
	time.Sleep(500 * time.Millisecond) // all three running
	for _, r := range []sdk.Ref[int]{p, w, s} {
		if err := sdk.Cancel(r, sdk.Recursive()); err != nil { // patient's child too
			return err
		}
	}
	_, errP := p.Get()
	_, errW := w.Get()
	start := time.Now()
	_, errS := s.Get()
	check("cancel_seen_by_task", errors.Is(errP, sdk.ErrTaskCancelled), errP)
	check("cancel_ends_blocked_get", errors.Is(errW, sdk.ErrTaskCancelled), errW)
	check("cancel_stops_stubborn_task", errors.Is(errS, sdk.ErrTaskCancelled) && time.Since(start) < 5*time.Second, fmt.Sprint(errS, time.Since(start)))
	v, err := square.Remote(3).Get()
	check("runs_after_cooperative_cancel", err == nil && v == 9, fmt.Sprint(v, err))
	return nil
}
