//go:build wasip1

package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/wasmfabric/fabric/sdk"
)

func init() { moreCases["method_options"] = methodOptions }

// Chatty is an actor whose calls log and nap.
type Chatty struct{ calls int }

var chattyClass = sdk.Actor("Chatty", func() (*Chatty, error) { return &Chatty{}, nil }, sdk.MaxRestarts(1))

var chattyNap = sdk.NewMethod1(chattyClass, "nap", func(c *Chatty, ms int) (int, error) {
	c.calls++
	sdk.Logf("napping %d ms", ms)
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return c.calls, nil
})

// chattySplit returns x's digits as three results.
var chattySplit = sdk.NewMethod1N(chattyClass, "digits", 3, func(c *Chatty, x int) ([]int, error) {
	return []int{x / 100, x / 10 % 10, x % 10}, nil
})

// methodOptions: per-call options on an actor's method, as .options() on
// a Ray method: a name for the call's output, and a timeout.
func methodOptions() error {
	h := chattyClass.Remote()
	n, err := chattyNap.Options(sdk.Name("short_nap")).Remote(h, 1).Get()
	check("method_call_named", err == nil && n == 1, fmt.Sprint(n, err))
	_, err = chattyNap.Options(sdk.TaskTimeout(300*time.Millisecond)).Remote(h, 10_000).Get()
	check("method_call_timeout", errors.Is(err, sdk.ErrTaskTimeout), err)
	n, err = chattyNap.Remote(h, 1).Get() // the restarted actor, with fresh state
	check("actor_serves_after_call_timeout", err == nil && n == 1, fmt.Sprint(n, err))
	refs := chattySplit.Remote(h, 472)
	d, err := sdk.GetAll(refs)
	check("method_num_returns", err == nil && len(refs) == 3 && d[0] == 4 && d[1] == 7 && d[2] == 2, fmt.Sprint(d, err))
	return nil
}
