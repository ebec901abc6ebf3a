//go:build wasip1

package main

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/wasmfabric/fabric/sdk"
)

func init() {
	moreCases["async_actor"] = asyncActor
	moreCases["concurrency_groups"] = concurrencyGroups
}

// Waiter is a concurrent actor: its calls run side by side on
// goroutines of its one instance, as an async actor's coroutines do.
type Waiter struct {
	mu        sync.Mutex
	now, peak int
	cancelled int // calls whose Get returned sdk.ErrCancelled
}

func (w *Waiter) enter() {
	w.mu.Lock()
	w.now++
	w.peak = max(w.peak, w.now)
	w.mu.Unlock()
}

func (w *Waiter) leave() {
	w.mu.Lock()
	w.now--
	w.mu.Unlock()
}

var waiterClass = sdk.Actor("Waiter", func() (*Waiter, error) { return &Waiter{}, nil }, sdk.MaxConcurrency(100))

// waiterSleep waits ms milliseconds, as `await asyncio.sleep` does.
var waiterSleep = sdk.NewMethod1(waiterClass, "sleep", func(w *Waiter, ms int) (int, error) {
	w.enter()
	defer w.leave()
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return ms, nil
})

// waiterGet gets the value of a reference it was passed, as `await ref`.
var waiterGet = sdk.NewMethod1(waiterClass, "get", func(w *Waiter, refs []sdk.Ref[int]) (int, error) {
	w.enter()
	defer w.leave()
	v, err := refs[0].Get()
	if errors.Is(err, sdk.ErrCancelled) {
		w.mu.Lock()
		w.cancelled++
		w.mu.Unlock()
	}
	return v, err
})

var waiterStats = sdk.NewMethod0(waiterClass, "stats", func(w *Waiter) ([3]int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return [3]int{w.now, w.peak, w.cancelled}, nil
})

// waiterChain puts and gets n values one after another: each get parks
// the call and the serve loop wakes it.
var waiterChain = sdk.NewMethod1(waiterClass, "chain", func(w *Waiter, n int) (int, error) {
	sum := 0
	for i := range n {
		ref, err := sdk.Put(i)
		if err != nil {
			return 0, err
		}
		v, err := ref.Get()
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
})

var waiterTaskID = sdk.NewMethod1(waiterClass, "task_id", func(w *Waiter, ms int) (string, error) {
	time.Sleep(time.Duration(ms) * time.Millisecond)
	rc, err := sdk.GetRuntimeContext()
	return rc.TaskID.String(), err
})

// asyncActor: an actor with MaxConcurrency 100 serves 100 calls that each
// wait one second at once; a call's Get parks only that call; cancelling
// a call stops it at its Get.
func asyncActor() error {
	h := waiterClass.Remote()
	if _, err := waiterStats.Remote(h).Get(); err != nil {
		return err
	}
	start := time.Now()
	refs := make([]sdk.Ref[int], 100)
	for i := range refs {
		refs[i] = waiterSleep.Remote(h, 1000)
	}
	vals, err := sdk.GetAll(refs)
	elapsed := time.Since(start)
	st, err2 := waiterStats.Remote(h).Get()
	check("async_100_calls_at_once", err == nil && err2 == nil && len(vals) == 100 && st[1] == 100, fmt.Sprint(st, err, err2))
	check("async_100_calls_under_2s", err == nil && elapsed < 2*time.Second, elapsed)
	fmt.Printf("async: 100 calls of 1 s on one actor took %.2f s, %d at once at the most\n", elapsed.Seconds(), st[1])

	// Two calls wait on slow tasks; a third, sent after them, ends first.
	slow1, slow2 := sleepy.Remote(1500), sleepy.Remote(1500)
	g1 := waiterGet.Remote(h, []sdk.Ref[int]{slow1})
	g2 := waiterGet.Remote(h, []sdk.Ref[int]{slow2})
	quick := waiterSleep.Remote(h, 1)
	ready, _, err := sdk.Wait([]sdk.Ref[int]{quick}, 1, sdk.Timeout(1200*time.Millisecond))
	_, notReady, err2 := sdk.Wait([]sdk.Ref[int]{g1, g2}, 2, sdk.Timeout(0))
	check("async_get_parks_only_its_call", err == nil && err2 == nil && len(ready) == 1 && len(notReady) == 2, fmt.Sprint(len(ready), len(notReady), err, err2))
	v1, err := g1.Get()
	v2, err2 := g2.Get()
	check("async_get_values", err == nil && err2 == nil && v1 == 1500 && v2 == 1500, fmt.Sprint(v1, v2, err, err2))

	// A call parked and woken many times in a row: the serve loop must
	// never block in serve_poll while a woken call has yet to run.
	sum, err := waiterChain.Remote(h, 500).Get(sdk.Timeout(30 * time.Second))
	check("async_many_wakeups", err == nil && sum == 500*499/2, fmt.Sprint(sum, err))

	// Each call has its own task ID.
	t1, t2 := waiterTaskID.Remote(h, 50), waiterTaskID.Remote(h, 50)
	id1, err := t1.Get()
	id2, err2 := t2.Get()
	check("async_calls_own_task_ids", err == nil && err2 == nil && id1 != id2 && id1 != "", fmt.Sprint(id1, id2, err, err2))

	// A cancelled call stops at its Get; the others go on.
	never := sleepy.Remote(60_000)
	parked := waiterGet.Remote(h, []sdk.Ref[int]{never})
	bystander := waiterSleep.Remote(h, 300)
	time.Sleep(200 * time.Millisecond)
	cstart := time.Now()
	cerr := sdk.Cancel(parked)
	_, err = parked.Get()
	took := time.Since(cstart)
	check("async_cancel_stops_at_park", cerr == nil && errors.Is(err, sdk.ErrTaskCancelled) && took < 900*time.Millisecond, fmt.Sprint(err, took))
	bv, err2 := bystander.Get()
	st, err3 := waiterStats.Remote(h).Get()
	check("async_cancel_leaves_others", err2 == nil && bv == 300 && err3 == nil && st[2] == 1, fmt.Sprint(bv, err2, st, err3))
	_ = sdk.Cancel(never, sdk.Force())
	return nil
}

// Pool is an actor whose I/O methods run in a group of their own.
type Pool struct {
	mu         sync.Mutex
	io, ioPeak int
}

var poolClass = sdk.Actor("Pool", func() (*Pool, error) { return &Pool{}, nil }, sdk.ConcurrencyGroups(map[string]int{"io": 2}))

var poolIO = sdk.NewMethod1(poolClass, "io", func(p *Pool, ms int) (int, error) {
	p.mu.Lock()
	p.io++
	p.ioPeak = max(p.ioPeak, p.io)
	p.mu.Unlock()
	time.Sleep(time.Duration(ms) * time.Millisecond)
	p.mu.Lock()
	p.io--
	p.mu.Unlock()
	return ms, nil
}).Options(sdk.ConcurrencyGroup("io"))

var poolPeek = sdk.NewMethod0(poolClass, "peek", func(p *Pool) ([2]int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return [2]int{p.io, p.ioPeak}, nil
})

// concurrencyGroups: a group's limit holds, and a method of the default
// group runs beside a full group.
func concurrencyGroups() error {
	h := poolClass.Remote()
	refs := make([]sdk.Ref[int], 24) // more than an actor's calls sent ahead
	for i := range refs {
		refs[i] = poolIO.Remote(h, 100)
	}
	time.Sleep(100 * time.Millisecond)
	// The io calls take 1.2 s, two at a time: a peek queued behind them
	// would end after all of them. (How many run at the peek's moment is
	// no test: between two of them none may.)
	peek, err := poolPeek.Remote(h).Get(sdk.Timeout(time.Second))
	_, notDone, err2 := sdk.Wait(refs, len(refs), sdk.Timeout(0))
	check("default_group_beside_full_group", err == nil && err2 == nil && peek[1] <= 2 && len(notDone) > 0, fmt.Sprint(peek, len(notDone), err, err2))
	_, err = sdk.GetAll(refs)
	peek, err2 = poolPeek.Remote(h).Get()
	check("concurrency_group_limit", err == nil && err2 == nil && peek[1] == 2, fmt.Sprint(peek, err, err2))
	_, err = poolPeek.Options(sdk.ConcurrencyGroup("nope")).Remote(h).Get()
	check("unknown_concurrency_group_fails", err != nil && strings.Contains(err.Error(), `no concurrency group "nope"`), err)
	return nil
}
