// Batches: 100 batches of 1,000,000 random floats, each made by one task
// and averaged by another that receives it by reference. Prints
// "Processed 100 batches".
package main

import (
	"fmt"
	"math/rand/v2"

	"github.com/wasmfabric/fabric/sdk"
)

const batchSize = 1_000_000

var makeBatch = sdk.Task1("make_batch", func(seed uint64) ([]float64, error) {
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]float64, batchSize)
	for i := range b {
		b[i] = r.Float64()
	}
	return b, nil
})

var mean = sdk.Task1("mean", func(batch []float64) (float64, error) {
	s := 0.0
	for _, v := range batch {
		s += v
	}
	return s / float64(len(batch)), nil
})

func init() { sdk.Main(run) }

func run(args []string) error {
	var means []sdk.Ref[float64]
	for i := range 100 {
		batch := makeBatch.Remote(uint64(i))
		means = append(means, mean.RemoteRefs(batch)) // the batch travels by reference
		batch.Release()                               // the mean task keeps it alive until it ran
	}
	vals, err := sdk.GetAll(means)
	if err != nil {
		return err
	}
	total := 0.0
	for _, v := range vals {
		if v < 0.49 || v > 0.51 {
			return fmt.Errorf("a batch mean of %f is not near 0.5", v)
		}
		total += v
	}
	fmt.Printf("mean of means: %.3f\n", total/float64(len(vals)))
	fmt.Printf("Processed %d batches\n", len(vals))
	return nil
}

func main() {}
