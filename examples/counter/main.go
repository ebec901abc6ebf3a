// Counter: an actor incremented 100 times. Calls from one caller run in
// submission order, so the last call sees every increment. Prints
// "Final count: 100".
package main

import (
	"fmt"

	"github.com/wasmfabric/fabric/sdk"
)

// Counter is the actor's state; it lives in its own sandbox.
type Counter struct{ n int }

var counterClass = sdk.Actor("Counter", func() (*Counter, error) { return &Counter{}, nil })

var incr = sdk.NewMethod1(counterClass, "incr", func(c *Counter, by int) (int, error) {
	c.n += by
	return c.n, nil
})

var value = sdk.NewMethod0(counterClass, "value", func(c *Counter) (int, error) { return c.n, nil })

// bump is a task that receives the counter's handle and calls it.
var bump = sdk.Task1("bump", func(h sdk.Handle[Counter]) (int, error) {
	return incr.Remote(h, 0).Get()
})

func init() { sdk.Main(run) }

func run(args []string) error {
	counter := counterClass.Options(sdk.Name("counter")).Remote()
	var last sdk.Ref[int]
	for range 100 {
		last = incr.Remote(counter, 1)
	}
	if _, err := last.Get(); err != nil {
		return err
	}
	// Handles travel to other tasks, and named actors can be looked up.
	if _, err := bump.Remote(counter).Get(); err != nil {
		return err
	}
	same, err := sdk.GetActor(counterClass, "counter")
	if err != nil {
		return err
	}
	n, err := value.Remote(same).Get()
	if err != nil {
		return err
	}
	fmt.Printf("Final count: %d\n", n)
	return nil
}

func main() {}
