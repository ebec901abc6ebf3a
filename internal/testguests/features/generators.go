//go:build wasip1

package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wasmfabric/fabric/sdk"
)

func init() {
	moreCases["generator_stream"] = generatorStream
	moreCases["generators"] = generators
}

// ticker yields n values, each after waiting ms milliseconds, as a
// generator that produces its results over time.
var ticker = sdk.Generator2("ticker", func(n, ms int, yield func(int) error) error {
	for i := range n {
		time.Sleep(time.Duration(ms) * time.Millisecond)
		if err := yield(i); err != nil {
			return err
		}
	}
	return nil
}, sdk.CPUs(0.25))

// generatorStream: the first of 10 values produced 1 s apart arrives
// within 1.2 s of the call, and the next a second later: each value is
// an object as soon as it is yielded.
func generatorStream() error {
	if _, err := ticker.Remote(1, 0).Refs(); err != nil { // a warm worker: the test is of streaming, not of start-up
		return err
	}
	start := time.Now()
	s := ticker.Remote(10, 1000)
	var got []int
	var at []time.Duration
	for ref, err := range s.All() {
		if err != nil {
			return err
		}
		v, err := ref.Get()
		if err != nil {
			return err
		}
		got = append(got, v)
		at = append(at, time.Since(start))
	}
	check("generator_first_within_1200ms", len(at) == 10 && at[0] < 1200*time.Millisecond, at)
	check("generator_values_stream", len(at) == 10 && at[1]-at[0] > 700*time.Millisecond && fmt.Sprint(got) == "[0 1 2 3 4 5 6 7 8 9]", fmt.Sprint(got, at))
	fmt.Printf("generator: first of 10 values after %d ms, last after %d ms\n", at[0].Milliseconds(), at[len(at)-1].Milliseconds())
	return nil
}

// shaky yields n values and then fails.
var shaky = sdk.Generator1("shaky", func(n int, yield func(string) error) error {
	for i := range n {
		if err := yield(fmt.Sprintf("item %d", i)); err != nil {
			return err
		}
	}
	return fmt.Errorf("shaky gave up after %d items", n)
}, sdk.CPUs(0.25))

// big yields values too large to travel inline.
var big = sdk.Generator1("big", func(n int, yield func([]byte) error) error {
	for i := range n {
		b := make([]byte, 300<<10)
		b[0], b[len(b)-1] = byte(i), byte(i)
		if err := yield(b); err != nil {
			return err
		}
	}
	return nil
}, sdk.CPUs(0.25))

// Summer is an actor whose generator method reads and changes its state.
type Summer struct{ total int }

var summerClass = sdk.Actor("Summer", func() (*Summer, error) { return &Summer{}, nil })

var summerRunning = sdk.NewGenMethod1(summerClass, "running", func(t *Summer, xs []int, yield func(int) error) error {
	for _, x := range xs {
		t.total += x
		if err := yield(t.total); err != nil {
			return err
		}
	}
	return nil
})

// generators: an error after k items keeps them; all the references at
// the end (num_returns="dynamic"); large items; an actor's generator
// method; a cancelled generator stops at its next yield.
func generators() error {
	s := shaky.Remote(3)
	var items []string
	var err error
	for {
		var r sdk.Ref[string]
		if r, err = s.Next(); err != nil {
			break
		}
		v, gerr := r.Get()
		if gerr != nil {
			err = gerr
			break
		}
		items = append(items, v)
	}
	check("generator_error_keeps_items", len(items) == 3 && items[2] == "item 2" && err != nil && strings.Contains(err.Error(), "shaky gave up after 3 items"), fmt.Sprint(items, err))

	refs, err := ticker.Remote(5, 1).Refs()
	vals, gerr := sdk.GetAll(refs)
	check("generator_dynamic_refs", err == nil && gerr == nil && fmt.Sprint(vals) == "[0 1 2 3 4]", fmt.Sprint(vals, err, gerr))

	brefs, err := big.Remote(3).Refs()
	bvals, gerr := sdk.GetAll(brefs)
	ok := err == nil && gerr == nil && len(bvals) == 3
	for i, b := range bvals {
		ok = ok && len(b) == 300<<10 && b[0] == byte(i) && b[len(b)-1] == byte(i)
	}
	check("generator_large_items", ok, fmt.Sprint(len(bvals), err, gerr))

	h := summerClass.Remote()
	mrefs, err := summerRunning.Remote(h, []int{1, 2, 3}).Refs()
	mvals, gerr := sdk.GetAll(mrefs)
	check("generator_method", err == nil && gerr == nil && fmt.Sprint(mvals) == "[1 3 6]", fmt.Sprint(mvals, err, gerr))

	slow := ticker.Remote(1000, 50)
	first, ferr := slow.Next()
	_, gerr = first.Get()
	cerr := sdk.Cancel(slow.End())
	n := 1
	for {
		if _, err = slow.Next(); err != nil {
			break
		}
		n++
	}
	check("generator_cancelled", ferr == nil && gerr == nil && cerr == nil && errors.Is(err, sdk.ErrTaskCancelled) && n < 1000, fmt.Sprint(n, err, ferr, gerr, cerr))
	return nil
}
