//go:build wasip1

package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wasmfabric/fabric/sdk"
)

func init() { moreCases["scheduling"] = scheduling }

// whereAmI returns the node it ran on, after a while (so that spread
// tasks overlap).
var whereAmI = sdk.Task1("where_am_i", func(ms int) (string, error) {
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return sdk.NodeID(), nil
}, sdk.CPUs(0.25))

// scheduling: node affinity (hard and soft), SPREAD and label selectors
// with Ray's operators.
func scheduling() error {
	nodes, err := sdk.Nodes()
	if err != nil {
		return err
	}
	ok := true
	for _, n := range nodes {
		got, err := whereAmI.Options(sdk.NodeAffinity(n.ID, false)).Remote(0).Get()
		ok = ok && err == nil && got == n.ID
		if !ok {
			fmt.Printf("affinity to %s: ran on %s, %v\n", n.ID, got, err)
		}
	}
	check("affinity_each_node", ok && len(nodes) > 0, nodes)
	_, err = whereAmI.Options(sdk.NodeAffinity("no-such-node", false)).Remote(0).Get()
	check("affinity_missing_node_infeasible", errors.Is(err, sdk.ErrInfeasible), err)
	got, err := whereAmI.Options(sdk.NodeAffinity("no-such-node", true)).Remote(0).Get()
	check("soft_affinity_falls_back", err == nil && got != "", fmt.Sprint(got, err))

	// A tenth of a CPU each: packed, they would all fit the first node.
	refs := make([]sdk.Ref[string], len(nodes))
	for i := range refs {
		refs[i] = whereAmI.Options(sdk.CPUs(0.1), sdk.SchedulingStrategy(sdk.Spread)).Remote(300)
	}
	where, err := sdk.GetAll(refs)
	seen := map[string]int{}
	for _, w := range where {
		seen[w]++
	}
	check("spread_over_every_node", err == nil && len(seen) == len(nodes), fmt.Sprint(seen, err))
	fmt.Printf("spread: %d tasks on %d nodes\n", len(refs), len(seen))

	_, err1 := whereAmI.Options(sdk.LabelNotExists("zone")).Remote(0).Get()
	_, err2 := whereAmI.Options(sdk.LabelNotIn("zone", "a", "b")).Remote(0).Get()
	_, err3 := whereAmI.Options(sdk.LabelExists("zone")).Remote(0).Get()
	_, err4 := whereAmI.Options(sdk.LabelIn("zone", "a")).Remote(0).Get()
	check("label_operators", err1 == nil && err2 == nil && errors.Is(err3, sdk.ErrInfeasible) && errors.Is(err4, sdk.ErrInfeasible),
		fmt.Sprint(err1, err2, err3, err4))
	_, err = whereAmI.Options(sdk.SchedulingStrategy("ROUND_ROBIN")).Remote(0).Get()
	check("unknown_strategy_refused", err != nil && strings.Contains(err.Error(), `unknown scheduling strategy "ROUND_ROBIN"`), err)
	return nil
}
