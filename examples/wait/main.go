// Wait: results are handled one by one, as they finish, with sdk.Wait.
package main

import (
	"fmt"
	"time"

	"github.com/wasmfabric/fabric/sdk"
)

var slow = sdk.Task1("slow", func(ms int) (int, error) {
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return ms, nil
}, sdk.CPUs(0.25))

func init() { sdk.Main(run) }

func run(args []string) error {
	var pending []sdk.Ref[int]
	for _, ms := range []int{2000, 500, 1500, 1000} { // 500 ms apart: room for worker start-up on a loaded machine
		pending = append(pending, slow.Remote(ms))
	}
	for len(pending) > 0 {
		ready, rest, err := sdk.Wait(pending, 1)
		if err != nil {
			return err
		}
		v, err := ready[0].Get()
		if err != nil {
			return err
		}
		fmt.Printf("finished: %d ms\n", v)
		pending = rest
	}
	return nil
}

func main() {}
