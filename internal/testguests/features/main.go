//go:build wasip1

// Features exercises the SDK's semantics one case at a time; each case
// prints "ok: NAME" lines that the tests check.
package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wasmfabric/fabric/sdk"
)

var sleepy = sdk.Task1("sleepy", func(ms int) (int, error) {
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return ms, nil
}, sdk.CPUs(0.25))

var blocker = sdk.Task1("blocker", func(ms int) (int, error) {
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return ms, nil
}, sdk.CPUs(2))

var sumAll = sdk.Task1("sum_all", func(refs []sdk.Ref[int]) (int, error) {
	vals, err := sdk.GetAll(refs) // nested refs arrive as refs
	if err != nil {
		return 0, err
	}
	s := 0
	for _, v := range vals {
		s += v
	}
	return s, nil
})

var square = sdk.Task1("square", func(x int) (int, error) { return x * x, nil })

// fanout submits tasks from inside a task and blocks in Get; it takes the
// node's only CPU, which it gives back while blocked.
var fanout = sdk.Task1("fanout", func(n int) (int, error) {
	var refs []sdk.Ref[int]
	for i := range n {
		refs = append(refs, square.Remote(i))
	}
	vals, err := sdk.GetAll(refs)
	if err != nil {
		return 0, err
	}
	s := 0
	for _, v := range vals {
		s += v
	}
	return s, nil
})

// quick is short at depth 0; above, it submits itself one level down and
// waits: once its calls are known to be short the agent sends them to
// workers ahead of time, and must take them back when one blocks.
var quick sdk.Func1[int, int]

func init() {
	quick = sdk.Task1("quick", func(depth int) (int, error) {
		if depth == 0 {
			return 1, nil
		}
		v, err := quick.Remote(depth - 1).Get()
		return v + 1, err
	})
}

var gpuTask = sdk.Task0("gpu_task", func() (int, error) { return 1, nil }, sdk.GPUs(1))

var divmod = sdk.Task1x2("divmod", func(x int) (int, int, error) { return x / 7, x % 7, nil })

var flaky = sdk.Task0("flaky", func() (int, error) {
	rc, err := sdk.GetRuntimeContext()
	if err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("flaky failure in attempt %d", rc.Attempt)
}, sdk.RetryExceptions(), sdk.MaxRetries(2))

var failing = sdk.Task0("failing", func() (int, error) { return 0, errors.New("deliberate failure") })

var consumer = sdk.Task1("consumer", func(x int) (int, error) { return x, nil })

var logger = sdk.Task0("logger", func() (int, error) {
	sdk.Logf("hello from %s", "a task")
	sdk.Warnf("careful, %s", "a task")
	sdk.Log(sdk.LevelError, "an error line")
	return 0, nil
})

// Acc is an actor whose method makes host calls (submit and get) while
// more calls to it are already on their way to its worker.
type Acc struct{ total int }

var accClass = sdk.Actor("Acc", func() (*Acc, error) { return &Acc{}, nil })

var accAdd = sdk.NewMethod1(accClass, "add_square", func(a *Acc, x int) (int, error) {
	v, err := square.Remote(x).Get()
	if err != nil {
		return 0, err
	}
	a.total += v
	return a.total, nil
})

// slowBig returns a value too large to travel inline, after a while.
var slowBig = sdk.Task1("slow_big", func(ms int) ([]byte, error) {
	time.Sleep(time.Duration(ms) * time.Millisecond)
	return make([]byte, 300<<10), nil
}, sdk.CPUs(0.25))

// orphaner submits a task and returns without waiting: nobody holds the
// child's large result when it arrives.
var orphaner = sdk.Task0("orphaner", func() (int, error) {
	slowBig.Remote(300)
	return 0, nil
}, sdk.CPUs(0.25))

// impatient waits for a slow large value but is killed by its timeout first.
var impatient = sdk.Task0("impatient", func() (int, error) {
	b, err := slowBig.Remote(1200).Get()
	return len(b), err
}, sdk.CPUs(0.25), sdk.TaskTimeout(300*time.Millisecond))

var negative = sdk.Task0("negative", func() (int, error) { return 0, nil }, sdk.CPUs(-1000))

// Echo is an actor that returns what it is given.
type Echo struct{}

var echoClass = sdk.Actor("Echo", func() (*Echo, error) { return &Echo{}, nil })

var echo = sdk.NewMethod1(echoClass, "echo", func(_ *Echo, s string) (string, error) { return s, nil })

// Tally counts: the attempts of a task that exits, across its retries.
type Tally struct{ n int }

var tallyClass = sdk.Actor("Tally", func() (*Tally, error) { return &Tally{}, nil })

var tallyAdd = sdk.NewMethod0(tallyClass, "add", func(t *Tally) (int, error) { t.n++; return t.n, nil })

// quitter counts its attempt and exits: a system failure, retried once.
var quitter = sdk.Task0("quitter", func() (int, error) {
	h, err := sdk.GetActor(tallyClass, "tally")
	if err != nil {
		return 0, err
	}
	if _, err := tallyAdd.Remote(h).Get(); err != nil {
		return 0, err
	}
	os.Exit(3)
	return 0, nil
}, sdk.MaxRetries(1))

// Quitter is an actor one of whose methods exits.
type Quitter struct{ calls int }

var quitterClass = sdk.Actor("Quitter", func() (*Quitter, error) { return &Quitter{}, nil }, sdk.MaxRestarts(1))

var quitterQuit = sdk.NewMethod0(quitterClass, "quit", func(q *Quitter) (int, error) { os.Exit(4); return 0, nil })

var quitterCalls = sdk.NewMethod0(quitterClass, "calls", func(q *Quitter) (int, error) { q.calls++; return q.calls, nil })

// Phoenix is an actor whose first attempt at a call exits: with a restart
// and a task retry, the call runs again on the restarted actor.
type Phoenix struct{}

var phoenixClass = sdk.Actor("Phoenix", func() (*Phoenix, error) { return &Phoenix{}, nil }, sdk.MaxRestarts(1), sdk.MaxTaskRetries(1))

var phoenixRise = sdk.NewMethod0(phoenixClass, "rise", func(*Phoenix) (int, error) {
	rc, err := sdk.GetRuntimeContext()
	if err != nil {
		return 0, err
	}
	if rc.Attempt == 0 {
		os.Exit(4)
	}
	return rc.Attempt, nil
})

// Sleeper is an actor whose calls sleep, and count the calls that ran.
type Sleeper struct{ ran int }

var sleeperClass = sdk.Actor("Sleeper", func() (*Sleeper, error) { return &Sleeper{}, nil })

var sleeperSleep = sdk.NewMethod1(sleeperClass, "sleep", func(s *Sleeper, ms int) (int, error) {
	time.Sleep(time.Duration(ms) * time.Millisecond)
	s.ran++
	return s.ran, nil
})

// ctxView is what the context cases return of a RuntimeContext.
type ctxView struct {
	Job, Task, Actor, Node, Group string
	Attempt, Bundle               int
	CPU                           float64
}

func viewOf(rc sdk.RuntimeContext) ctxView {
	gid := rc.PlacementGroup.ID()
	return ctxView{Job: rc.JobID, Task: fmt.Sprintf("%x", rc.TaskID[:]), Actor: fmt.Sprintf("%x", rc.ActorID[:]), Node: rc.NodeID,
		Group: fmt.Sprintf("%x", gid[:]), Attempt: rc.Attempt, Bundle: rc.Bundle, CPU: rc.Resources["CPU"]}
}

var ctxTask = sdk.Task0("ctx_task", func() (ctxView, error) {
	rc, err := sdk.GetRuntimeContext()
	return viewOf(rc), err
}, sdk.CPUs(0.5))

// ctxRetry fails until its third attempt, which returns its attempt.
var ctxRetry = sdk.Task0("ctx_retry", func() (int, error) {
	rc, err := sdk.GetRuntimeContext()
	if err != nil {
		return 0, err
	}
	if rc.Attempt < 2 {
		return 0, fmt.Errorf("attempt %d fails", rc.Attempt)
	}
	return rc.Attempt, nil
}, sdk.RetryExceptions(), sdk.MaxRetries(2))

// Ctx is an actor that reports its methods' context.
type Ctx struct{}

var ctxClass = sdk.Actor("Ctx", func() (*Ctx, error) { return &Ctx{}, nil }, sdk.CPUs(0.25))

var ctxMethod = sdk.NewMethod0(ctxClass, "context", func(*Ctx) (ctxView, error) {
	rc, err := sdk.GetRuntimeContext()
	return viewOf(rc), err
})

func init() { sdk.Main(run) }

// moreCases are the cases kept in the other files of the package, by name.
var moreCases = map[string]func() error{}

func check(name string, ok bool, detail any) {
	if ok {
		fmt.Printf("ok: %s\n", name)
	} else {
		fmt.Printf("FAIL: %s: %v\n", name, detail)
	}
}

func run(args []string) error {
	for _, c := range args {
		switch c {
		case "get_timeout":
			r := sleepy.Remote(1500)
			start := time.Now()
			_, err := r.Get(sdk.Timeout(200 * time.Millisecond))
			check("get_timeout", errors.Is(err, sdk.ErrGetTimeout) && time.Since(start) < time.Second, err)
			v, err := r.Get()
			check("get_after_timeout", err == nil && v == 1500, err)
		case "wait_timeout":
			refs := []sdk.Ref[int]{sleepy.Remote(50), sleepy.Remote(3000)}
			ready, notReady, err := sdk.Wait(refs, 2, sdk.Timeout(1000*time.Millisecond))
			check("wait_timeout", err == nil && len(ready) == 1 && len(notReady) == 1 && ready[0].ID() == refs[0].ID(), fmt.Sprint(len(ready), len(notReady), err))
		case "cancel":
			running := blocker.Remote(5000) // takes both CPUs
			time.Sleep(500 * time.Millisecond)
			queued := blocker.Remote(10)
			check("cancel_queued", sdk.Cancel(queued) == nil, "")
			_, err := queued.Get()
			check("cancel_queued_get", errors.Is(err, sdk.ErrTaskCancelled), err)
			start := time.Now()
			check("cancel_running", sdk.Cancel(running, sdk.Force()) == nil, "")
			_, err = running.Get()
			check("cancel_running_get", errors.Is(err, sdk.ErrTaskCancelled) && time.Since(start) < 2*time.Second, err)
			v, err := blocker.Remote(1).Get()
			check("cpus_back_after_cancel", err == nil && v == 1, err)
		case "nested":
			var refs []sdk.Ref[int]
			for i := range 5 {
				refs = append(refs, square.Remote(i))
			}
			v, err := sumAll.Remote(refs).Get()
			check("nested_refs", err == nil && v == 30, fmt.Sprint(v, err))
		case "fanout":
			v, err := fanout.Options(sdk.CPUs(1)).Remote(10).Get()
			check("tasks_submit_tasks", err == nil && v == 285, fmt.Sprint(v, err))
		case "pipeline":
			warm := make([]sdk.Ref[int], 300)
			for i := range warm {
				warm[i] = quick.Remote(0)
			}
			_, err := sdk.GetAll(warm)
			check("pipeline_warm", err == nil, err)
			nested := make([]sdk.Ref[int], 20) // each blocked parent holds a worker: stay under the cap
			for i := range nested {
				nested[i] = quick.Remote(1 + i%2)
			}
			vals, err := sdk.GetAll(nested)
			good := err == nil
			for i, v := range vals {
				good = good && v == 2+i%2
			}
			check("pipeline_blocking_children", good, err)
			batch := make([]sdk.Ref[int], 300)
			for i := range batch {
				batch[i] = quick.Remote(0)
			}
			cerr := sdk.Cancel(batch[150])
			v, err := batch[150].Get()
			check("pipeline_cancel", cerr == nil && (errors.Is(err, sdk.ErrTaskCancelled) || (err == nil && v == 1)), fmt.Sprint(v, err))
			batch = append(batch[:150], batch[151:]...)
			vals, err = sdk.GetAll(batch)
			good = err == nil && len(vals) == 299
			for _, v := range vals {
				good = good && v == 1
			}
			check("pipeline_others_unharmed", good, err)
		case "infeasible":
			_, err := gpuTask.Remote().Get()
			check("infeasible", errors.Is(err, sdk.ErrInfeasible), err)
			fmt.Printf("infeasible message: %v\n", err)
		case "multi":
			q, r := divmod.Remote(23)
			qv, err1 := q.Get()
			rv, err2 := r.Get()
			check("multiple_returns", err1 == nil && err2 == nil && qv == 3 && rv == 2, fmt.Sprint(qv, rv, err1, err2))
		case "retry_exceptions":
			_, err := flaky.Remote().Get()
			check("retry_exceptions", err != nil && strings.Contains(err.Error(), "flaky failure in attempt 2"), err)
			fmt.Printf("flaky error: %v\n", err)
		case "error_propagation":
			_, err := consumer.RemoteRefs(failing.Remote()).Get()
			var te *sdk.TaskError
			check("error_propagates", errors.As(err, &te) && te.Task == "failing", err)
		case "put_get":
			ref, err := sdk.Put(map[string][]int{"a": {1, 2}, "b": {3}})
			if err != nil {
				return err
			}
			m, err := ref.Get()
			check("put_get_map", err == nil && len(m["a"]) == 2 && m["b"][0] == 3, err)
			big, err := sdk.Put(make([]float64, 1<<20))
			if err != nil {
				return err
			}
			b, err := big.Get()
			check("put_get_big", err == nil && len(b) == 1<<20, err)
		case "release":
			// twenty 4 MB objects, each released before the next: freed
			// objects make room, so a small arena never spills
			for i := range 20 {
				v := make([]int64, 512<<10)
				v[0] = int64(i)
				r, err := sdk.Put(v)
				if err != nil {
					return err
				}
				got, err := r.Get()
				if err != nil || got[0] != int64(i) {
					return fmt.Errorf("object %d: %v", i, err)
				}
				r.Release()
			}
			check("release", true, "")
		case "spill":
			// ten 4 MB objects held at once: more than a small arena holds
			var refs []sdk.Ref[[]int64]
			for i := range 10 {
				v := make([]int64, 512<<10)
				v[0] = int64(i)
				r, err := sdk.Put(v)
				if err != nil {
					return err
				}
				refs = append(refs, r)
			}
			ok := true
			for i, r := range refs {
				v, err := r.Get()
				ok = ok && err == nil && len(v) == 512<<10 && v[0] == int64(i)
			}
			check("spill", ok, "")
		case "named":
			a := echoClass.Options(sdk.Name("echo")).Remote()
			b := echoClass.Options(sdk.Name("echo")).Remote()
			check("duplicate_name_refused", a.Err() == nil && b.Err() != nil, b.Err())
			h, err := sdk.GetActor(echoClass, "echo")
			v, err2 := echo.Remote(h, "hi").Get()
			check("named_lookup", err == nil && err2 == nil && v == "hi", fmt.Sprint(err, err2))
			_, err = sdk.GetActor(echoClass, "nobody")
			check("unknown_name", err != nil, err)
			check("kill", sdk.Kill(h, true) == nil, "")
			_, err = echo.Remote(h, "again").Get()
			check("call_after_kill", errors.Is(err, sdk.ErrActorDied), err)
			// The dead actor's name is free again at once.
			c := echoClass.Options(sdk.Name("echo")).Remote()
			h2, err := sdk.GetActor(echoClass, "echo")
			v, err2 = echo.Remote(h2, "anew").Get()
			check("name_free_after_kill", c.Err() == nil && err == nil && err2 == nil && v == "anew", fmt.Sprint(c.Err(), err, err2))
			// get_if_exists: the second creation gets the first actor.
			g1 := echoClass.Options(sdk.Name("echo2"), sdk.GetIfExists()).Remote()
			g2 := echoClass.Options(sdk.Name("echo2"), sdk.GetIfExists()).Remote()
			v, err = echo.Remote(g2, "same").Get()
			check("get_if_exists", g1.Err() == nil && g2.Err() == nil && g1.ID() == g2.ID() && err == nil && v == "same",
				fmt.Sprint(g1.Err(), g2.Err(), g1.ID() == g2.ID(), err))
		case "actor_hostcalls":
			acc := accClass.Remote()
			var refs []sdk.Ref[int]
			for i := range 50 {
				refs = append(refs, accAdd.Remote(acc, i))
			}
			vals, err := sdk.GetAll(refs)
			want, ordered := 0, true
			for i, v := range vals {
				want += i * i
				ordered = ordered && v == want
			}
			check("actor_hostcalls", err == nil && ordered && want == 40425, fmt.Sprint(err, vals))
		case "robust":
			// results nobody holds, a get whose waiter died, a negative demand:
			// each is handled and the node goes on serving
			_, err := orphaner.Remote().Get()
			check("orphan_submitted", err == nil, err)
			_, err = impatient.Remote().Get()
			check("impatient_timed_out", errors.Is(err, sdk.ErrTaskTimeout), err)
			time.Sleep(1500 * time.Millisecond) // the orphan and the slow value arrive
			_, err = negative.Remote().Get()
			check("negative_demand_refused", err != nil && strings.Contains(err.Error(), "not a non-negative amount"), err)
			v, err := square.Remote(7).Get()
			check("still_serving", err == nil && v == 49, err)
		case "placement_groups":
			pg, err := sdk.NewPlacementGroup([]sdk.Bundle{{"CPU": 1}, {"CPU": 1}}, sdk.StrictPack)
			check("pg_created", err == nil, err)
			check("pg_ready", pg.Ready(sdk.Timeout(10*time.Second)) == nil, "")
			v, err := square.Options(sdk.InPlacementGroup(pg, 0)).Remote(6).Get()
			check("task_in_bundle", err == nil && v == 36, fmt.Sprint(v, err))
			// the group holds both CPUs: an ordinary task waits until it is removed
			outside := square.Remote(5)
			ready, _, err := sdk.Wait([]sdk.Ref[int]{outside}, 1, sdk.Timeout(500*time.Millisecond))
			check("reservation_hides_cpus", err == nil && len(ready) == 0, fmt.Sprint(len(ready), err))
			check("pg_removed", sdk.RemovePlacementGroup(pg) == nil, "")
			v, err = outside.Get(sdk.Timeout(10 * time.Second))
			check("cpus_back_after_removal", err == nil && v == 25, fmt.Sprint(v, err))
			spread, err := sdk.NewPlacementGroup([]sdk.Bundle{{"CPU": 0.1}, {"CPU": 0.1}}, sdk.StrictSpread)
			check("spread_created", err == nil, err)
			err = spread.Ready(sdk.Timeout(5 * time.Second))
			check("strict_spread_infeasible_on_one_node", err != nil && strings.Contains(err.Error(), "never"), err)
			_, err = sdk.NewPlacementGroup([]sdk.Bundle{{"CPU": -1}}, sdk.Pack)
			check("bad_bundle_refused", err != nil, err)
		case "log":
			_, err := logger.Remote().Get()
			check("log", err == nil, err)
		case "exits":
			tally := tallyClass.Options(sdk.Name("tally")).Remote()
			_, err := quitter.Remote().Get()
			n, err2 := tallyAdd.Remote(tally).Get()
			check("task_exit_is_a_worker_failure", errors.Is(err, sdk.ErrWorkerDied) && strings.Contains(fmt.Sprint(err), "exited with code 3"), err)
			check("task_exit_retried", err2 == nil && n == 3, fmt.Sprint(n, err2)) // two attempts, then this call
			q := quitterClass.Remote()
			c1, err1 := quitterCalls.Remote(q).Get()
			_, err = quitterQuit.Remote(q).Get()
			check("actor_exit_kills_the_call", errors.Is(err, sdk.ErrActorDied) && strings.Contains(fmt.Sprint(err), "exited with code 4"), err)
			c2, err2 := quitterCalls.Remote(q).Get()
			check("actor_restarted_after_exit", err1 == nil && c1 == 1 && err2 == nil && c2 == 1, fmt.Sprint(c1, err1, c2, err2))
		case "context":
			drv, err := sdk.GetRuntimeContext()
			check("context_driver", err == nil && drv.JobID != "" && drv.TaskID != (sdk.ObjectID{}) && drv.NodeID == sdk.NodeID() &&
				drv.ActorID == (sdk.ObjectID{}) && drv.Attempt == 0 && drv.Bundle == -1, fmt.Sprintf("%+v %v", drv, err))
			ref := ctxTask.Remote()
			v, err := ref.Get()
			tid := ref.ID()
			copy(tid[16:], []byte{0, 0, 0, 0}) // a task's ID is its first result's, with index 0
			check("context_task", err == nil && v.Job == drv.JobID && v.Task == fmt.Sprintf("%x", tid[:]) &&
				v.CPU == 0.5 && v.Attempt == 0 && v.Actor == fmt.Sprintf("%x", make([]byte, sdk.IDSize)) && v.Node != "",
				fmt.Sprintf("%+v %v; driver job %s, task %x", v, err, drv.JobID, tid[:]))
			n, err := ctxRetry.Remote().Get()
			check("context_attempt", err == nil && n == 2, fmt.Sprint(n, err))
			a := ctxClass.Remote()
			av, err := ctxMethod.Remote(a).Get()
			id := a.ID()
			check("context_actor", err == nil && av.Actor == fmt.Sprintf("%x", id[:]) && av.CPU == 0.25 && av.Job == drv.JobID,
				fmt.Sprintf("%+v %v", av, err))
			pg, err := sdk.NewPlacementGroup([]sdk.Bundle{{"CPU": 1}}, sdk.Pack)
			if err == nil {
				err = pg.Ready(sdk.Timeout(10 * time.Second))
			}
			gv, err2 := ctxTask.Options(sdk.InPlacementGroup(pg, 0)).Remote().Get()
			gid := pg.ID()
			check("context_placement_group", err == nil && err2 == nil && gv.Group == fmt.Sprintf("%x", gid[:]) && gv.Bundle == 0,
				fmt.Sprintf("%+v %v %v", gv, err, err2))
			_ = sdk.RemovePlacementGroup(pg)
		case "cancel_actor":
			// The second call waits behind the first (it may already be
			// on the actor's worker): cancelled, it never runs.
			s := sleeperClass.Remote()
			r1 := sleeperSleep.Remote(s, 500)
			r2 := sleeperSleep.Remote(s, 1)
			r3 := sleeperSleep.Remote(s, 1)
			err := sdk.Cancel(r2)
			_, err2 := r2.Get()
			v1, err1 := r1.Get()
			v3, err3 := r3.Get()
			check("cancel_queued_actor_call", err == nil && errors.Is(err2, sdk.ErrTaskCancelled), fmt.Sprint(err, err2))
			check("cancelled_actor_call_never_ran", err1 == nil && v1 == 1 && err3 == nil && v3 == 2, fmt.Sprint(v1, err1, v3, err3))
		case "task_retries":
			p := phoenixClass.Remote()
			v, err := phoenixRise.Remote(p).Get()
			check("actor_call_retried_after_restart", err == nil && v == 1, fmt.Sprint(v, err))
		case "mixed":
			// References of different types, waited for and got together.
			sq := square.Remote(5)
			txt, err := sdk.Put("text")
			ready, _, err2 := sdk.WaitAny([]sdk.AnyRef{sq, txt}, 2, sdk.Timeout(10*time.Second))
			var n int
			var s string
			err3 := sdk.GetEach([]sdk.Target{sdk.To(sq, &n), sdk.To(txt, &s)})
			check("wait_mixed_types", err == nil && err2 == nil && len(ready) == 2, fmt.Sprint(len(ready), err, err2))
			check("get_mixed_types", err3 == nil && n == 25 && s == "text", fmt.Sprint(n, s, err3))
		case "cluster":
			nodes, err := sdk.Nodes()
			here := false
			for _, n := range nodes {
				here = here || n.ID == sdk.NodeID()
			}
			check("cluster_nodes", err == nil && here, fmt.Sprint(nodes, err))
			total, err1 := sdk.ClusterResources()
			avail, err2 := sdk.AvailableResources()
			check("cluster_resources", err1 == nil && err2 == nil && total["CPU"] > 0 && avail["CPU"] <= total["CPU"],
				fmt.Sprint(total, avail, err1, err2))
			fmt.Printf("cluster: %d nodes, CPU %g\n", len(nodes), total["CPU"])
		case "driver_exit":
			// The rest of the arguments is the code.
			code := 0
			if len(args) > 1 {
				code, _ = strconv.Atoi(args[len(args)-1])
			}
			fmt.Printf("driver exits with code %d\n", code)
			os.Exit(code)
		default:
			fn, ok := moreCases[c]
			if !ok {
				return fmt.Errorf("unknown case %q", c)
			}
			if err := fn(); err != nil {
				return err
			}
		}
	}
	return nil
}

func main() {}
