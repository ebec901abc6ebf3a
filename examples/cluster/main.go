//go:build wasip1

// Cluster runs tasks across the nodes of a cluster: each reports the node
// that ran it, and two ask for a node labelled tier=edge. A large object
// travels to the edge node, and an actor lives there. Run it with
// `make cluster-demo`, or `fabric submit` on a cluster of your own.
package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/wasmfabric/fabric/sdk"
)

// where takes a whole CPU for a moment and says which node it ran on.
var where = sdk.Task1("where", func(i int) (string, error) {
	time.Sleep(300 * time.Millisecond)
	return sdk.NodeID(), nil
}, sdk.CPUs(1))

// measure reports the size of a large array, and where it was measured.
var measure = sdk.Task1("measure", func(data []float64) (string, error) {
	fmt.Printf("measuring %d floats\n", len(data)) // shown by the job, marked with the node
	sum := 0.0
	for _, v := range data {
		sum += v
	}
	return fmt.Sprintf("%d floats summing to %.0f on %s", len(data), sum, sdk.NodeID()), nil
}, sdk.CPUs(1), sdk.NodeLabel("tier", "edge"))

// Tally is an actor that lives on an edge node: its calls travel there
// from the driver, in order, and its state stays there.
type Tally struct{ sum int }

var tallyClass = sdk.Actor("Tally", func() (*Tally, error) { return &Tally{}, nil }, sdk.NodeLabel("tier", "edge"))

var add = sdk.NewMethod1(tallyClass, "add", func(t *Tally, x int) (string, error) {
	t.sum += x
	return fmt.Sprintf("%d on %s", t.sum, sdk.NodeID()), nil
})

func init() { sdk.Main(run) }

func run(args []string) error {
	var refs []sdk.Ref[string]
	for i := range 8 {
		refs = append(refs, where.Remote(i))
	}
	edge := where.Options(sdk.NodeLabel("tier", "edge"))
	for i := range 2 {
		refs = append(refs, edge.Remote(100+i))
	}
	nodes, err := sdk.GetAll(refs)
	if err != nil {
		return err
	}
	fmt.Printf("edge tasks ran on %s and %s\n", nodes[8], nodes[9])

	// A large object made here, read on the edge node: it travels once,
	// pulled in chunks over QUIC.
	big := make([]float64, 1<<20)
	for i := range big {
		big[i] = 1
	}
	ref, err := sdk.Put(big)
	if err != nil {
		return err
	}
	report, err := measure.RemoteRefs(ref).Get()
	if err != nil {
		return err
	}
	fmt.Printf("8 MiB object from %s: %s\n", sdk.NodeID(), report)
	tally := tallyClass.Remote()
	var sums []sdk.Ref[string]
	for i := 1; i <= 10; i++ {
		sums = append(sums, add.Remote(tally, i))
	}
	all, err := sdk.GetAll(sums)
	if err != nil {
		return err
	}
	fmt.Printf("actor Tally: 1+2+...+10 = %s\n", all[len(all)-1])

	seen := map[string]bool{}
	for _, n := range nodes {
		seen[n] = true
	}
	distinct := make([]string, 0, len(seen))
	for n := range seen {
		distinct = append(distinct, n)
	}
	sort.Strings(distinct)
	fmt.Printf("ran on %d nodes: %s\n", len(distinct), strings.Join(distinct, " "))
	return nil
}

func main() {}
