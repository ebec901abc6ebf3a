// Shared: a 10,000,000-float array is put in the object store once and
// summed by 10 tasks that each receive it by reference.
package main

import (
	"fmt"

	"github.com/wasmfabric/fabric/sdk"
)

var sum = sdk.Task2("sum", func(part int, data []float64) (float64, error) {
	s := 0.0
	for _, v := range data {
		s += v
	}
	return s, nil
}, sdk.CPUs(0.5))

func init() { sdk.Main(run) }

func run(args []string) error {
	data := make([]float64, 10_000_000)
	for i := range data {
		data[i] = 1
	}
	ref, err := sdk.Put(data) // stored once
	if err != nil {
		return err
	}
	var sums []sdk.Ref[float64]
	for i := range 10 {
		sums = append(sums, sum.RemoteRefs(sdk.Val(i), ref)) // every task gets the same object
	}
	vals, err := sdk.GetAll(sums)
	if err != nil {
		return err
	}
	for i, v := range vals {
		if v != 10_000_000 {
			return fmt.Errorf("task %d summed %f", i, v)
		}
	}
	fmt.Printf("10 tasks summed the same 10000000-float object: %.0f each\n", vals[0])
	return nil
}

func main() {}
