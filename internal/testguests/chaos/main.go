//go:build wasip1

// Chaos is a guest whose tasks and actors print "victim" lines so that a
// test can kill their worker processes and check retries and restarts.
package main

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wasmfabric/fabric/sdk"
)

var victim = sdk.Task1("victim", func(ms int) (string, error) {
	fmt.Println("victim running")
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return "victim finished", nil
}, sdk.MaxRetries(2))

var fragile = sdk.Task1("fragile", func(ms int) (string, error) {
	fmt.Println("victim running")
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return "fragile finished", nil
}, sdk.MaxRetries(0))

// brief is short unless asked to sleep, so that the agent sends its calls
// to workers ahead of time; it has no retries.
var brief = sdk.Task1("brief", func(ms int) (int, error) {
	if ms > 0 {
		fmt.Println("victim running")
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	return ms, nil
}, sdk.MaxRetries(0))

// edgeSleeper runs on a node labelled tier=edge for a while and says which.
var edgeSleeper = sdk.Task1("edge_sleeper", func(ms int) (string, error) {
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return sdk.NodeID(), nil
}, sdk.NodeLabel("tier", "edge"), sdk.MaxRetries(3))

// Tally is an actor whose state shows restarts: a restart runs the
// constructor again and the count starts over.
type Tally struct{ n int }

var tallyClass = sdk.Actor("Tally", func() (*Tally, error) { return &Tally{}, nil }, sdk.MaxRestarts(1))

var add = sdk.NewMethod1(tallyClass, "add", func(t *Tally, ms int) (int, error) {
	t.n++
	if ms > 0 {
		fmt.Println("victim running")
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	return t.n, nil
})

// Counter is an actor on an edge node; it says where it lives.
type Counter struct{ n int }

var counterClass = sdk.Actor("Counter", func() (*Counter, error) { return &Counter{}, nil },
	sdk.NodeLabel("tier", "edge"), sdk.MaxRestarts(2))

var bump = sdk.NewMethod1(counterClass, "bump", func(c *Counter, ms int) (string, error) {
	c.n++
	if ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	return fmt.Sprintf("%d@%s", c.n, sdk.NodeID()), nil
})

// double runs wherever the scheduler puts it.
var double = sdk.Task1("double", func(x int) (int, error) { return 2 * x, nil })

// edgeSum runs on an edge node: it gets the driver's objects through the
// references nested in its argument, and submits tasks of its own.
var edgeSum = sdk.Task1("edge_sum", func(refs []sdk.Ref[int]) (string, error) {
	vals, err := sdk.GetAll(refs)
	if err != nil {
		return "", err
	}
	var kids []sdk.Ref[int]
	for _, v := range vals {
		kids = append(kids, double.Remote(v))
	}
	doubled, err := sdk.GetAll(kids)
	if err != nil {
		return "", err
	}
	sum := 0
	for _, v := range doubled {
		sum += v
	}
	fmt.Printf("summed %d values\n", len(vals))
	return fmt.Sprintf("%d on %s", sum, sdk.NodeID()), nil
}, sdk.NodeLabel("tier", "edge"))

// edgeMake puts objects on an edge node and returns references to them.
var edgeMake = sdk.Task1("edge_make", func(n int) ([]sdk.Ref[[]float64], error) {
	var out []sdk.Ref[[]float64]
	for i := range n {
		v := make([]float64, 1<<17) // 1 MiB: stored, pulled in chunks
		for k := range v {
			v[k] = float64(i)
		}
		r, err := sdk.Put(v)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}, sdk.NodeLabel("tier", "edge"))

// edgeBig makes an 8 MiB result on an edge node, where it stays until
// the driver needs it.
var edgeBig = sdk.Task1("edge_big", func(n int) ([]float64, error) {
	fmt.Println("made big")
	v := make([]float64, n)
	for i := range v {
		v[i] = 1
	}
	return v, nil
}, sdk.NodeLabel("tier", "edge"))

// edgeMakeCounter creates a counter from a task on an edge node, calls
// it once and hands it back to the driver.
var edgeMakeCounter = sdk.Task0("edge_make_counter", func() (sdk.Handle[Counter], error) {
	h := counterClass.Remote()
	_, err := bump.Remote(h, 0).Get()
	return h, err
}, sdk.NodeLabel("tier", "edge"))

// edgeLen gets its argument on an edge node.
// wideTask sleeps on an edge node, reads a shared object and says so.
var wideTask = sdk.Task2("wide_task", func(i int, data []float64) (int, error) {
	time.Sleep(20 * time.Millisecond)
	fmt.Printf("task %d read %d floats\n", i, len(data))
	return i, nil
}, sdk.NodeLabel("tier", "edge"))

var edgeLen = sdk.Task1("edge_len", func(v []float64) (int, error) { return len(v), nil }, sdk.NodeLabel("tier", "edge"))

// bundleWhere runs in a bundle of a placement group and says where.
var bundleWhere = sdk.Task1("bundle_where", func(ms int) (string, error) {
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return sdk.NodeID(), nil
})

// bigWhere reports where it ran with a large argument.
var bigWhere = sdk.Task1("big_where", func(v []float64) (string, error) { return sdk.NodeID(), nil })

// edgeCall calls the counter through a handle passed to it.
var edgeCall = sdk.Task1("edge_call", func(h sdk.Handle[Counter]) (string, error) {
	return bump.Remote(h, 0).Get()
}, sdk.NodeLabel("tier", "edge"))

// stormTask is one of the many short tasks of the storm case.
var stormTask = sdk.Task1("storm_task", func(i int) (int, error) {
	time.Sleep(10 * time.Millisecond)
	return i * i, nil
})

// storm runs n short tasks across the cluster and calls the counter on an
// edge node every 20 submissions, while the test kills that node: every
// task's result must arrive, and the counter's calls resume after its
// restart.
func storm(n int) error {
	h := counterClass.Remote()
	first, err := bump.Remote(h, 0).Get()
	if err != nil {
		return err
	}
	fmt.Printf("storm: actor on %s\n", first[strings.Index(first, "@")+1:])
	refs := make([]sdk.Ref[int], 0, n)
	okCalls, failedCalls, resets := 0, 0, 0
	last := 1
	for i := range n {
		refs = append(refs, stormTask.Remote(i))
		if i%20 != 19 {
			continue
		}
		if i >= 200 { // keep about 200 tasks in flight, so that the calls spread over the run
			if _, err := refs[i-200].Get(); err != nil {
				return err
			}
		}
		v, err := bump.Remote(h, 0).Get()
		switch {
		case errors.Is(err, sdk.ErrActorDied):
			failedCalls++ // it was on its way when the node died
		case err != nil:
			return err
		default:
			okCalls++
			var count int
			fmt.Sscanf(v, "%d@", &count)
			if count < last {
				resets++ // a restarted actor counts from 1 again
			}
			last = count
		}
	}
	vals, err := sdk.GetAll(refs)
	if err != nil {
		return err
	}
	right := 0
	for i, v := range vals {
		if v == i*i {
			right++
		}
	}
	fmt.Printf("storm: %d of %d results right\n", right, n)
	after, err := bump.Remote(h, 0).Get()
	fmt.Printf("storm: actor calls ok %d, failed %d, restarts seen %d; last call %s %v\n", okCalls, failedCalls, resets, after, err)
	return nil
}

// putOneTwoThree puts 1, 2 and 3 as objects of the driver.
func putOneTwoThree() ([]sdk.Ref[int], error) {
	var refs []sdk.Ref[int]
	for i := 1; i <= 3; i++ {
		r, err := sdk.Put(i)
		if err != nil {
			return nil, err
		}
		refs = append(refs, r)
	}
	return refs, nil
}

// quicksortLeaf is the size below which quicksort sorts in place.
const quicksortLeaf = 1 << 18

// quicksort is Ray's tree-of-tasks example: a task that partitions its
// numbers around a pivot, sorts each side in a task of its own, and waits
// for both. Every level waits on the next, so a node must run children
// while their parents are blocked in get.
var quicksort sdk.Func1[[]int64, []int64]

func init() {
	quicksort = sdk.Task1("quicksort", func(xs []int64) ([]int64, error) {
		if len(xs) <= quicksortLeaf {
			sort.Slice(xs, func(i, j int) bool { return xs[i] < xs[j] })
			return xs, nil
		}
		pivot := xs[len(xs)/2]
		var less, equal, more []int64
		for _, x := range xs {
			switch {
			case x < pivot:
				less = append(less, x)
			case x > pivot:
				more = append(more, x)
			default:
				equal = append(equal, x)
			}
		}
		// As in Ray's example, the halves are passed as they are: the SDK
		// puts large arguments in the object store by itself.
		l, m := quicksort.Remote(less), quicksort.Remote(more)
		ls, err := l.Get()
		if err != nil {
			return nil, err
		}
		ms, err := m.Get()
		if err != nil {
			return nil, err
		}
		return append(append(ls, equal...), ms...), nil
	})
}

// napper sleeps and takes no CPU: many run at once, each in a process.
var napper = sdk.Task1("napper", func(ms int) (int, error) {
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return ms, nil
}, sdk.CPUs(0))

// waiter blocks in get on the gate it is handed inside a list (so that it
// starts before the gate is ready) and takes the default CPU: it gives the
// CPU back while it waits, and thousands wait at once.
var waiter = sdk.Task1("waiter", func(gate []sdk.Ref[int]) (int, error) {
	v, err := gate[0].Get()
	return v + 1, err
})

// oddFails fails for odd numbers, and doubles even ones.
var oddFails = sdk.Task1("odd_fails", func(x int) (int, error) {
	if x%2 == 1 {
		return 0, fmt.Errorf("odd: %d", x)
	}
	return 2 * x, nil
})

// depth recurses n tasks deep: each waits for its child in get.
var depth sdk.Func1[int, int]

func init() {
	depth = sdk.Task1("depth", func(n int) (int, error) {
		if n == 0 {
			return 0, nil
		}
		d, err := depth.Remote(n - 1).Get()
		return d + 1, err
	})
}

func init() { sdk.Main(run) }

func run(args []string) error {
	switch args[0] {
	case "burst_idle": // 32 zero-CPU tasks at once, then nothing for a while
		refs := make([]sdk.Ref[int], 32)
		for i := range refs {
			refs[i] = napper.Remote(3000) // long enough that all 32 run at once
		}
		if _, err := sdk.GetAll(refs); err != nil {
			return err
		}
		fmt.Println("burst_idle: burst done")
		time.Sleep(20 * time.Second)
	case "quicksort": // quicksort N: the tree of tasks on one node
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		xs := make([]int64, n)
		state := uint64(88172645463325252)
		for i := range xs { // xorshift: the same numbers every run
			state ^= state << 13
			state ^= state >> 7
			state ^= state << 17
			xs[i] = int64(state >> 1)
		}
		start := time.Now()
		sorted, err := quicksort.Remote(xs).Get()
		if err != nil {
			return err
		}
		ok := len(sorted) == n && sort.SliceIsSorted(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
		fmt.Printf("quicksort: %d numbers sorted: %v in %v\n", len(sorted), ok, time.Since(start).Round(time.Millisecond))
	case "idle_actors": // idle_actors N: N actors, each called once, then nothing for a while
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		refs := make([]sdk.Ref[int], n)
		for i := range refs {
			refs[i] = add.Remote(tallyClass.Remote(), 0)
		}
		if _, err := sdk.GetAll(refs); err != nil {
			return err
		}
		fmt.Printf("idle_actors: %d ready\n", n)
		time.Sleep(30 * time.Second)
	case "blocked": // blocked N MS: N tasks blocked in get at once, on a gate that opens after MS
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		ms, err := strconv.Atoi(args[2])
		if err != nil {
			return err
		}
		gate := []sdk.Ref[int]{napper.Remote(ms)}
		refs := make([]sdk.Ref[int], n)
		for i := range refs {
			refs[i] = waiter.Remote(gate)
		}
		vs, err := sdk.GetAll(refs)
		if err != nil {
			return err
		}
		sum := 0
		for _, v := range vs {
			sum += v
		}
		fmt.Printf("blocked: %d done, sum %d\n", n, sum)
	case "deep": // deep N: a recursion N tasks deep
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		d, err := depth.Remote(n).Get()
		fmt.Printf("deep: %d %v\n", d, err)
	case "sync": // sync N: N short tasks, each waited for before the next (the short path)
		n, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		bad := 0
		for i := range n {
			v, err := double.Remote(i).Get()
			if err != nil || v != 2*i {
				bad++
			}
			w, err := oddFails.Remote(i).Get()
			if (i%2 == 1) != (err != nil) || (err == nil && w != 2*i) {
				bad++
			}
			if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("odd: %d", i)) {
				bad++
			}
		}
		fmt.Printf("sync: %d rounds, %d wrong\n", n, bad)
	case "small": // one short task
		v, err := napper.Remote(1).Get()
		fmt.Printf("small: %v %v\n", v, err)
	case "retry":
		v, err := victim.Remote(3000).Get()
		fmt.Printf("retry: %v %v\n", v, err)
	case "noretry":
		_, err := fragile.Remote(3000).Get()
		fmt.Printf("noretry: worker died: %v\n", errors.Is(err, sdk.ErrWorkerDied))
	case "queued":
		warm := make([]sdk.Ref[int], 300)
		for i := range warm {
			warm[i] = brief.Remote(0)
		}
		if _, err := sdk.GetAll(warm); err != nil {
			return err
		}
		doomed := brief.Remote(3000) // killed by the test while it sleeps
		behind := make([]sdk.Ref[int], 100)
		for i := range behind {
			behind[i] = brief.Remote(0)
		}
		_, err := doomed.Get()
		fmt.Printf("queued: victim died: %v\n", errors.Is(err, sdk.ErrWorkerDied))
		_, err = sdk.GetAll(behind)
		fmt.Printf("queued: tasks sent ahead survived: %v\n", err)
	case "remote":
		ms := 3000
		if len(args) > 1 {
			ms, _ = strconv.Atoi(args[1])
		}
		node, err := edgeSleeper.Remote(ms).Get() // its node is stopped by the test
		fmt.Printf("remote: ran on %s %v\n", node, err)
	case "actor":
		h := tallyClass.Remote()
		n1, err := add.Remote(h, 0).Get()
		fmt.Printf("actor: before kill %d %v\n", n1, err)
		_, err = add.Remote(h, 3000).Get() // killed by the test while it sleeps
		fmt.Printf("actor: in-flight call failed: %v\n", errors.Is(err, sdk.ErrActorDied))
		n2, err := add.Remote(h, 0).Get()
		fmt.Printf("actor: after restart %d %v\n", n2, err)
		_, _ = add.Remote(h, 3000).Get() // killed again: no restarts left
		_, err = add.Remote(h, 0).Get()
		fmt.Printf("actor: dead after max restarts: %v\n", errors.Is(err, sdk.ErrActorDied))
	case "spread":
		refs, err := putOneTwoThree()
		if err != nil {
			return err
		}
		sum, err := edgeSum.Remote(refs).Get()
		fmt.Printf("spread: nested sum %s %v\n", sum, err)
		made, err := edgeMake.Remote(3).Get()
		if err != nil {
			return err
		}
		total := 0.0
		for _, r := range made {
			v, err := r.Get()
			if err != nil {
				return err
			}
			total += v[0] * float64(len(v))
		}
		fmt.Printf("spread: objects made remotely %d sum %.0f\n", len(made), total)
		h := counterClass.Remote()
		var calls []sdk.Ref[string]
		for range 50 {
			calls = append(calls, bump.Remote(h, 0))
		}
		got, err := sdk.GetAll(calls)
		if err != nil {
			return err
		}
		inOrder := true
		for i, g := range got {
			if !strings.HasPrefix(g, fmt.Sprintf("%d@", i+1)) {
				inOrder = false
			}
		}
		node := got[0][strings.Index(got[0], "@")+1:]
		fmt.Printf("spread: actor on %s, 50 calls in order: %v\n", node, inOrder)
		via, err := edgeCall.Remote(h).Get()
		fmt.Printf("spread: call from a remote task %s %v\n", via, err)
		// Many short tasks on the edge nodes: sent ahead in the
		// reservations of those running there.
		edgeDouble := double.Options(sdk.NodeLabel("tier", "edge"))
		many := make([]sdk.Ref[int], 1000)
		for i := range many {
			many[i] = edgeDouble.Remote(i)
		}
		doubled, err := sdk.GetAll(many)
		if err != nil {
			return err
		}
		manySum := 0
		for _, v := range doubled {
			manySum += v
		}
		fmt.Printf("spread: 1000 short tasks on the edge sum to %d\n", manySum)
		big, err := edgeBig.Remote(1 << 20).Get()
		fmt.Printf("spread: a result left on the edge node: %d floats %v\n", len(big), err)
	case "wide":
		// Many more tasks on one edge node at once than a QUIC connection
		// allows streams (256): all in flight there together, each reading
		// an object of the driver's node.
		n := 300
		if len(args) > 1 {
			n, _ = strconv.Atoi(args[1])
		}
		shared, err := sdk.Put(make([]float64, 100_000))
		if err != nil {
			return err
		}
		refs := make([]sdk.Ref[int], n)
		for i := range refs {
			refs[i] = wideTask.RemoteRefs(sdk.Val(i), shared)
		}
		vals, err := sdk.GetAll(refs)
		if err != nil {
			return err
		}
		sum := 0
		for _, v := range vals {
			sum += v
		}
		shared.Release()
		sdk.ReleaseAll(refs)
		fmt.Printf("wide: %d tasks, sum %d\n", n, sum)
	case "storm":
		n := 2000
		if len(args) > 1 {
			n, _ = strconv.Atoi(args[1])
		}
		return storm(n)
	case "groups":
		pg, err := sdk.NewPlacementGroup([]sdk.Bundle{{"CPU": 1}, {"CPU": 1}, {"CPU": 1}}, "STRICT_SPREAD")
		if err != nil {
			return err
		}
		if err := pg.Ready(sdk.Timeout(30 * time.Second)); err != nil {
			return err
		}
		var refs []sdk.Ref[string]
		for i := range 3 {
			refs = append(refs, bundleWhere.Options(sdk.InPlacementGroup(pg, i)).Remote(200))
		}
		nodes, err := sdk.GetAll(refs)
		if err != nil {
			return err
		}
		sort.Strings(nodes)
		fmt.Printf("groups: bundles ran on %s\n", strings.Join(nodes, " "))
		if err := sdk.RemovePlacementGroup(pg); err != nil {
			return err
		}
	case "cancel_remote":
		r := edgeSleeper.Remote(20000)
		time.Sleep(3 * time.Second) // running on the edge node by now
		if err := sdk.Cancel(r); err != nil {
			return err
		}
		_, err := r.Get()
		fmt.Printf("cancel_remote: cancelled %v\n", errors.Is(err, sdk.ErrTaskCancelled))
		time.Sleep(5 * time.Second) // the job goes on while the test looks at the edge node
	case "lineage":
		r := edgeBig.Remote(1 << 20)
		time.Sleep(4 * time.Second) // done; its node is stopped by the test meanwhile
		v, err := r.Get()
		fmt.Printf("lineage: got %d floats after its node died: %v\n", len(v), err)
	case "release":
		big, err := sdk.Put(make([]float64, 1<<19)) // 4 MiB, fetched by the edge node
		if err != nil {
			return err
		}
		n, err := edgeLen.RemoteRefs(big).Get()
		if err != nil {
			return err
		}
		big.Release()
		fmt.Printf("release: the edge task read %d floats; dropped\n", n)
		time.Sleep(6 * time.Second) // the test looks for the object meanwhile
	case "nested_actor":
		h, err := edgeMakeCounter.Remote().Get()
		if err != nil {
			return err
		}
		second, err := bump.Remote(h, 0).Get()
		fmt.Printf("nested_actor: from the driver %s %v\n", second, err)
		third, err := edgeCall.Remote(h).Get()
		fmt.Printf("nested_actor: from another task %s %v\n", third, err)
	case "lossy":
		// Across a lossy link: the driver's objects to the edge node, the
		// edge node's objects back, an actor there.
		refs, err := putOneTwoThree()
		if err != nil {
			return err
		}
		sum, err := edgeSum.Remote(refs).Get()
		if err != nil {
			return err
		}
		made, err := edgeMake.Remote(2).Get()
		if err != nil {
			return err
		}
		floats := 0
		for _, r := range made {
			v, err := r.Get()
			if err != nil {
				return err
			}
			floats += len(v)
		}
		h := counterClass.Remote()
		var last string
		for range 5 {
			if last, err = bump.Remote(h, 0).Get(); err != nil {
				return err
			}
		}
		fmt.Printf("lossy: sum %s; %d floats back; counter %s\n", sum, floats, last)
	case "locality":
		big, err := sdk.Put(make([]float64, 1<<19)) // 4 MiB, held by the driver's node
		if err != nil {
			return err
		}
		var nodes []string
		for range 5 {
			n, err := bigWhere.RemoteRefs(big).Get()
			if err != nil {
				return err
			}
			nodes = append(nodes, n)
		}
		fmt.Printf("locality: %s\n", strings.Join(nodes, " "))
	case "owner_died":
		made, err := edgeMake.Remote(1).Get() // the node that made it is stopped by the test
		if err != nil {
			return err
		}
		fmt.Println("owner_died: made")
		time.Sleep(3 * time.Second)
		_, err = made[0].Get()
		fmt.Printf("owner_died: get after its node died: %v\n", errors.Is(err, sdk.ErrOwnerDied))
	case "actor_loss":
		h := counterClass.Remote()
		first, err := bump.Remote(h, 0).Get()
		fmt.Printf("actor_loss: first %s %v\n", first, err)
		_, err = bump.Remote(h, 5000).Get() // its node is stopped by the test meanwhile
		fmt.Printf("actor_loss: in-flight call failed: %v\n", errors.Is(err, sdk.ErrActorDied))
		after, err := bump.Remote(h, 0).Get()
		fmt.Printf("actor_loss: after restart %s %v\n", after, err)
	default:
		return fmt.Errorf("unknown case %q", args[0])
	}
	return nil
}

func main() {}
