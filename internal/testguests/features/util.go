//go:build wasip1

package main

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/wasmfabric/fabric/sdk"
)

func init() { moreCases["util"] = utilCases }

// Doubler is a pool's actor: it doubles, and counts its calls.
type Doubler struct{ calls int }

var doublerClass = sdk.Actor("Doubler", func() (*Doubler, error) { return &Doubler{}, nil }, sdk.CPUs(0.1))

var double = sdk.NewMethod1(doublerClass, "double", func(d *Doubler, x int) (int, error) {
	d.calls++
	time.Sleep(time.Duration(10*(x%3)) * time.Millisecond) // finish out of order
	return 2 * x, nil
})

// producer puts n numbers on a queue, waiting while it is full.
var producer = sdk.Task2("producer", func(q sdk.Queue[int], n int) (int, error) {
	for i := range n {
		if err := q.Put(i, sdk.Timeout(10*time.Second)); err != nil {
			return i, err
		}
	}
	return n, nil
}, sdk.CPUs(0.1))

// utilCases: an actor pool and a queue, as ray.util has them.
func utilCases() error {
	handles := make([]sdk.Handle[Doubler], 3)
	for i := range handles {
		handles[i] = doublerClass.Remote()
	}
	pool := sdk.NewActorPool[Doubler, int](handles)
	out, err := sdk.PoolMap(pool, double.Remote, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	check("pool_map_in_order", err == nil && slices.Equal(out, []int{0, 2, 4, 6, 8, 10, 12, 14, 16, 18}), fmt.Sprint(out, err))
	for _, x := range []int{2, 1, 0} {
		pool.Submit(func(h sdk.Handle[Doubler]) sdk.Ref[int] { return double.Remote(h, x) })
	}
	var got []int
	for pool.HasNext() {
		v, err := pool.GetNextUnordered(sdk.Timeout(10 * time.Second))
		if err != nil {
			return err
		}
		got = append(got, v)
	}
	slices.Sort(got)
	_, errEmpty := pool.GetNext()
	check("pool_unordered", slices.Equal(got, []int{0, 2, 4}) && errors.Is(errEmpty, sdk.ErrPoolEmpty), fmt.Sprint(got, errEmpty))

	q, err := sdk.NewQueue[int](2)
	if err != nil {
		return err
	}
	_, errEmpty = q.GetNowait()
	done := producer.Remote(q, 5) // blocks in Put once two items wait
	var items []int
	for range 5 {
		v, err := q.Get(sdk.Timeout(10 * time.Second))
		if err != nil {
			return err
		}
		items = append(items, v)
	}
	n, err := done.Get()
	size, _ := q.Size()
	check("queue_between_tasks", err == nil && n == 5 && slices.Equal(items, []int{0, 1, 2, 3, 4}) && size == 0 && errors.Is(errEmpty, sdk.ErrQueueEmpty),
		fmt.Sprint(items, n, err, size, errEmpty))
	for i := range 2 {
		_ = q.PutNowait(i)
	}
	check("queue_bounded", errors.Is(q.PutNowait(9), sdk.ErrQueueFull) && errors.Is(q.Put(9, sdk.Timeout(50*time.Millisecond)), sdk.ErrQueueFull), "")
	return q.Shutdown()
}
