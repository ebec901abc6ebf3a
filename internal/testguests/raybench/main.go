//go:build wasip1

// Raybench is the driver of `fabric bench`: Ray's microbenchmarks
// (python/ray/_private/ray_perf.py) with Ray's definitions, timed from
// inside the guest as Ray times them from its Python driver: a warm-up,
// then trials of at least a minimum duration each, reported as the mean and
// standard deviation of operations per second. Each result is one line:
//
//	BENCH {"name":"...","value":...,"sd":...,"unit":"/s"}
//
// Arguments: FILTER-REGEX TRIAL-SECONDS WARMUP-SECONDS TRIALS CPUS.
package main

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"

	"github.com/wasmfabric/fabric/sdk"
)

var smallValue = sdk.Task0("small_value", func() (int, error) { return 0, nil })

// Actor is Ray's benchmark actor: a method returning a small value.
type Actor struct{}

var actorClass = sdk.Actor("Actor", func() (*Actor, error) { return &Actor{}, nil })

var actorSmallValue = sdk.NewMethod0(actorClass, "small_value", func(*Actor) (int, error) { return 0, nil })

// AsyncActor is Ray's async actor of the 1:1 async-actor rows: its calls
// run concurrently (MaxConcurrency), each on a goroutine of its own.
type AsyncActor struct{}

var asyncActorClass = sdk.Actor("AsyncActor", func() (*AsyncActor, error) { return &AsyncActor{}, nil }, sdk.MaxConcurrency(1000))

var asyncSmallValue = sdk.NewMethod0(asyncActorClass, "small_value", func(*AsyncActor) (int, error) { return 0, nil })

// Client is Ray's benchmark client actor: it submits batches itself.
type Client struct {
	actors []sdk.Handle[Actor]
}

var clientClass = sdk.Actor1("Client", func(actors []sdk.Handle[Actor]) (*Client, error) {
	return &Client{actors: actors}, nil
})

// smallValueBatch submits n no-op tasks and waits for them.
var smallValueBatch = sdk.NewMethod1(clientClass, "small_value_batch", func(c *Client, n int) (int, error) {
	refs := make([]sdk.Ref[int], n)
	for i := range refs {
		refs[i] = smallValue.Remote()
	}
	_, err := sdk.GetAll(refs)
	sdk.ReleaseAll(refs)
	return n, err
})

// actorBatch calls each of the client's actors n times and waits.
var actorBatch = sdk.NewMethod1(clientClass, "small_value_batch_actors", func(c *Client, n int) (int, error) {
	refs := make([]sdk.Ref[int], 0, n*len(c.actors))
	for _, a := range c.actors {
		for range n {
			refs = append(refs, actorSmallValue.Remote(a))
		}
	}
	_, err := sdk.GetAll(refs)
	sdk.ReleaseAll(refs)
	return len(refs), err
})

// work makes n calls round-robin over the actors (Ray's n:n benchmark).
var work = sdk.Task2("work", func(actors []sdk.Handle[Actor], n int) (int, error) {
	refs := make([]sdk.Ref[int], n)
	for i := range refs {
		refs[i] = actorSmallValue.Remote(actors[i%len(actors)])
	}
	_, err := sdk.GetAll(refs)
	sdk.ReleaseAll(refs)
	return n, err
}, sdk.CPUs(0))

type config struct {
	filter  *regexp.Regexp
	trial   time.Duration
	warmup  time.Duration
	trials  int
	numCPUs int
	// spill runs only the row whose tasks all go to a node labelled
	// bench=spill (`fabric bench` starts one).
	spill bool
}

type result struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	SD    float64 `json:"sd"`
	Unit  string  `json:"unit"`
	Runs  int     `json:"runs"`
}

// timeit is ray_perf's timeit: warm up, then trials of at least cfg.trial,
// each giving count*multiplier/elapsed.
func timeit(cfg config, name string, fn func() error, multiplier float64, unit string) error {
	if !cfg.filter.MatchString(name) {
		return nil
	}
	start := time.Now()
	for time.Since(start) < cfg.warmup {
		if err := fn(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	rates := make([]float64, 0, cfg.trials)
	runs := 0
	for range cfg.trials {
		count := 0
		start := time.Now()
		for time.Since(start) < cfg.trial {
			if err := fn(); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			count++
		}
		runs += count
		rates = append(rates, float64(count)*multiplier/time.Since(start).Seconds())
	}
	mean, sd := meanSD(rates)
	b, _ := json.Marshal(result{Name: name, Value: mean, SD: sd, Unit: unit, Runs: runs})
	fmt.Printf("BENCH %s\n", b)
	return nil
}

func meanSD(xs []float64) (float64, float64) {
	m := 0.0
	for _, x := range xs {
		m += x
	}
	m /= float64(len(xs))
	v := 0.0
	for _, x := range xs {
		v += (x - m) * (x - m)
	}
	return m, math.Sqrt(v / float64(len(xs)))
}

//lint:ignore U1000 the host calls it through go:wasmexport

// benchMatmul is the Go twin of cmatmul's bench_matmul, exported raw so
// that `fabric bench` times only the computation.
//
//go:wasmexport bench_matmul
func benchMatmul(n int32) float64 {
	N := int(n)
	a, b, c := make([]float64, N*N), make([]float64, N*N), make([]float64, N*N)
	for i := range a {
		a[i] = float64(i%7) * 0.5
		b[i] = float64(i%5) * 0.25
	}
	for i := 0; i < N; i++ {
		for k := 0; k < N; k++ {
			aik := a[i*N+k]
			for j := 0; j < N; j++ {
				c[i*N+j] += aik * b[k*N+j]
			}
		}
	}
	sum := 0.0
	for _, v := range c {
		sum += v
	}
	return sum
}

// nap sleeps and takes no CPU: the gate of the parked-task benchmark.
var nap = sdk.Task1("nap", func(ms int) (int, error) {
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return ms, nil
}, sdk.CPUs(0))

// parkedWaiter blocks in get on the gate it is handed in a list, so that
// it starts (and parks) before the gate is ready.
var parkedWaiter = sdk.Task1("parked_waiter", func(gate []sdk.Ref[int]) (int, error) {
	v, err := gate[0].Get()
	return v, err
})

// park runs `park N MS`: N tasks parked in get at once on a gate that
// opens after MS; `fabric bench` measures the node's memory meanwhile.
func park(args []string) error {
	n, err1 := strconv.Atoi(args[1])
	ms, err2 := strconv.Atoi(args[2])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("usage: park N MS")
	}
	gate := []sdk.Ref[int]{nap.Remote(ms)}
	refs := make([]sdk.Ref[int], n)
	for i := range refs {
		refs[i] = parkedWaiter.Remote(gate)
	}
	_, err := sdk.GetAll(refs)
	return err
}

// manyTasks runs `tasks N`: N no-op tasks, a thousand at a time, each
// got and released; the state API's scale benchmark leaves them as the
// node's finished task records.
func manyTasks(args []string) error {
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 0 {
		return fmt.Errorf("usage: tasks N")
	}
	for n > 0 {
		refs := make([]sdk.Ref[int], min(n, 1000))
		for i := range refs {
			refs[i] = smallValue.Remote()
		}
		if _, err := sdk.GetAll(refs); err != nil {
			return err
		}
		sdk.ReleaseAll(refs)
		n -= len(refs)
	}
	return nil
}

func init() { sdk.Main(run) }

func run(args []string) error {
	if len(args) == 3 && args[0] == "park" {
		return park(args)
	}
	if len(args) == 2 && args[0] == "tasks" {
		return manyTasks(args)
	}
	cfg := config{filter: regexp.MustCompile("."), trial: 2 * time.Second, warmup: time.Second, trials: 4, numCPUs: 2}
	if len(args) >= 5 {
		var err error
		if cfg.filter, err = regexp.Compile(args[0]); err != nil {
			return err
		}
		secs, err1 := strconv.ParseFloat(args[1], 64)
		warm, err2 := strconv.ParseFloat(args[2], 64)
		trials, err3 := strconv.Atoi(args[3])
		cpus, err4 := strconv.Atoi(args[4])
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil || trials < 1 {
			return fmt.Errorf("usage: FILTER TRIAL-SECONDS WARMUP-SECONDS TRIALS CPUS")
		}
		cfg.trial = time.Duration(secs * float64(time.Second))
		cfg.warmup = time.Duration(warm * float64(time.Second))
		cfg.trials, cfg.numCPUs = trials, cpus
		cfg.spill = len(args) >= 6 && args[5] == "spill"
	}
	if cfg.spill {
		// Every task goes to the other node: the spec over QUIC, a run in
		// the job's share there, the value back.
		spilled := smallValue.Options(sdk.NodeLabel("bench", "spill"))
		return timeit(cfg, "single_client_tasks_async_spilled", func() error {
			refs := make([]sdk.Ref[int], 1000)
			for i := range refs {
				refs[i] = spilled.Remote()
			}
			_, err := sdk.GetAll(refs)
			sdk.ReleaseAll(refs)
			return err
		}, 1000, "/s")
	}
	nActors := max(1, cfg.numCPUs/2) // Ray: multiprocessing.cpu_count() // 2

	steps := []func() error{
		func() error {
			return timeit(cfg, "single_client_tasks_sync", func() error {
				r := smallValue.Remote()
				_, err := r.Get()
				r.Release() // Python frees the reference as it goes out of scope
				return err
			}, 1, "/s")
		},
		func() error {
			return timeit(cfg, "single_client_tasks_async", func() error {
				refs := make([]sdk.Ref[int], 1000)
				for i := range refs {
					refs[i] = smallValue.Remote()
				}
				_, err := sdk.GetAll(refs)
				sdk.ReleaseAll(refs)
				return err
			}, 1000, "/s")
		},
		func() error {
			if !cfg.filter.MatchString("multi_client_tasks_async") {
				return nil
			}
			const n, m = 10000, 4
			clients := make([]sdk.Handle[Client], m)
			for i := range clients {
				clients[i] = clientClass.Remote([]sdk.Handle[Actor]{})
			}
			return timeit(cfg, "multi_client_tasks_async", func() error {
				refs := make([]sdk.Ref[int], m)
				for i, c := range clients {
					refs[i] = smallValueBatch.Remote(c, n)
				}
				_, err := sdk.GetAll(refs)
				sdk.ReleaseAll(refs)
				return err
			}, n*m, "/s")
		},
		func() error {
			if !cfg.filter.MatchString("1_1_actor_calls_sync") && !cfg.filter.MatchString("1_1_actor_calls_async") {
				return nil
			}
			a := actorClass.Remote()
			if err := timeit(cfg, "1_1_actor_calls_sync", func() error {
				r := actorSmallValue.Remote(a)
				_, err := r.Get()
				r.Release()
				return err
			}, 1, "/s"); err != nil {
				return err
			}
			return timeit(cfg, "1_1_actor_calls_async", func() error {
				refs := make([]sdk.Ref[int], 1000)
				for i := range refs {
					refs[i] = actorSmallValue.Remote(a)
				}
				_, err := sdk.GetAll(refs)
				sdk.ReleaseAll(refs)
				return err
			}, 1000, "/s")
		},
		func() error {
			if !cfg.filter.MatchString("1_1_async_actor_calls_sync") && !cfg.filter.MatchString("1_1_async_actor_calls_async") {
				return nil
			}
			a := asyncActorClass.Remote()
			if err := timeit(cfg, "1_1_async_actor_calls_sync", func() error {
				r := asyncSmallValue.Remote(a)
				_, err := r.Get()
				r.Release()
				return err
			}, 1, "/s"); err != nil {
				return err
			}
			return timeit(cfg, "1_1_async_actor_calls_async", func() error {
				refs := make([]sdk.Ref[int], 1000)
				for i := range refs {
					refs[i] = asyncSmallValue.Remote(a)
				}
				_, err := sdk.GetAll(refs)
				sdk.ReleaseAll(refs)
				return err
			}, 1000, "/s")
		},
		func() error {
			if !cfg.filter.MatchString("1_n_actor_calls_async") {
				return nil
			}
			const n = 5000
			actors := make([]sdk.Handle[Actor], nActors)
			for i := range actors {
				actors[i] = actorClass.Remote()
			}
			client := clientClass.Remote(actors)
			return timeit(cfg, "1_n_actor_calls_async", func() error {
				r := actorBatch.Remote(client, n)
				_, err := r.Get()
				r.Release()
				return err
			}, float64(n*nActors), "/s")
		},
		func() error {
			if !cfg.filter.MatchString("n_n_actor_calls_async") {
				return nil
			}
			const n, m = 5000, 4
			actors := make([]sdk.Handle[Actor], nActors)
			for i := range actors {
				actors[i] = actorClass.Remote()
			}
			return timeit(cfg, "n_n_actor_calls_async", func() error {
				refs := make([]sdk.Ref[int], m)
				for i := range refs {
					refs[i] = work.Remote(actors, n)
				}
				_, err := sdk.GetAll(refs)
				sdk.ReleaseAll(refs)
				return err
			}, n*m, "/s")
		},
		func() error {
			return timeit(cfg, "single_client_put_calls", func() error {
				r, err := sdk.Put(0)
				r.Release()
				return err
			}, 1, "/s")
		},
		func() error {
			if !cfg.filter.MatchString("single_client_get_calls") {
				return nil
			}
			v, err := sdk.Put(0)
			if err != nil {
				return err
			}
			return timeit(cfg, "single_client_get_calls", func() error {
				_, err := v.Get()
				return err
			}, 1, "/s")
		},
		func() error {
			if !cfg.filter.MatchString("single_client_put_gigabytes") {
				return nil
			}
			arr := make([]int64, 100*1024*1024) // np.zeros(100 * 1024 * 1024, dtype=np.int64)
			return timeit(cfg, "single_client_put_gigabytes", func() error {
				r, err := sdk.Put(arr)
				r.Release()
				return err
			}, 8*0.1, "GB/s")
		},
		func() error {
			// Ray: 100 groups of one bundle {"custom": 0.001}, wait for each, remove each.
			const numPGs = 100
			return timeit(cfg, "placement_group_create/removal", func() error {
				pgs := make([]sdk.PlacementGroup, numPGs)
				for i := range pgs {
					pg, err := sdk.NewPlacementGroup([]sdk.Bundle{{"custom": 0.001}}, sdk.Pack)
					if err != nil {
						return err
					}
					pgs[i] = pg
				}
				for _, pg := range pgs {
					if err := pg.Ready(sdk.Timeout(30 * time.Second)); err != nil {
						return err
					}
				}
				for _, pg := range pgs {
					if err := sdk.RemovePlacementGroup(pg); err != nil {
						return err
					}
				}
				return nil
			}, numPGs, "/s")
		},
		func() error {
			return timeit(cfg, "single_client_wait_1k_refs", func() error {
				notReady := make([]sdk.Ref[int], 1000)
				for i := range notReady {
					notReady[i] = smallValue.Remote()
				}
				for range 1000 {
					var ready []sdk.Ref[int]
					var err error
					if ready, notReady, err = sdk.Wait(notReady, 1); err != nil {
						return err
					}
					sdk.ReleaseAll(ready)
				}
				return nil
			}, 1, "/s")
		},
		func() error {
			// Fabric's own: actors made, each called once, and killed;
			// each is an instance in the job's worker process.
			const batch = 50
			return timeit(cfg, "actor_creation_go_guest", func() error {
				actors := make([]sdk.Handle[Actor], batch)
				refs := make([]sdk.Ref[int], batch)
				for i := range actors {
					actors[i] = actorClass.Remote()
					refs[i] = actorSmallValue.Remote(actors[i])
				}
				_, err := sdk.GetAll(refs)
				sdk.ReleaseAll(refs)
				for _, a := range actors {
					if kerr := sdk.Kill(a, true); kerr != nil && err == nil {
						err = kerr
					}
				}
				return err
			}, batch, "/s")
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func main() {}
