//go:build wasip1

// Chaos is a guest whose tasks and actors print "victim" lines so that a
// test can kill their worker processes and check retries and restarts.
package main

import (
	"errors"
	"fmt"
	"strconv"
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

func init() { sdk.Main(run) }

func run(args []string) error {
	switch args[0] {
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
	default:
		return fmt.Errorf("unknown case %q", args[0])
	}
	return nil
}

func main() {}
