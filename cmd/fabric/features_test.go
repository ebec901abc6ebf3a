//go:build linux

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/testrig"
)

// TestFeatures runs the features guest's cases with the real binary: Get
// and Wait timeouts, cancel, nested references, tasks that submit tasks
// (on one CPU, so the parent must give its CPU back while it blocks),
// infeasible tasks, multiple returns, retries of application errors, error
// propagation through arguments, Put/Get and logging.
func TestFeatures(t *testing.T) {
	wasm := testrig.Guest(t, "internal/testguests/features")
	cases := []struct {
		cpus  string
		args  []string
		want  []string
		extra []string // substrings of stdout or stderr
	}{
		{"2", []string{"get_timeout", "wait_timeout"}, []string{"get_timeout", "get_after_timeout", "wait_timeout"}, nil},
		{"2", []string{"cancel"}, []string{"cancel_queued", "cancel_queued_get", "cancel_running", "cancel_running_get", "cpus_back_after_cancel"}, nil},
		{"1", []string{"nested", "fanout"}, []string{"nested_refs", "tasks_submit_tasks"}, nil},
		{"1", []string{"pipeline"}, []string{"pipeline_warm", "pipeline_blocking_children", "pipeline_cancel", "pipeline_others_unharmed"}, nil},
		{"2", []string{"pipeline"}, []string{"pipeline_warm", "pipeline_blocking_children", "pipeline_cancel", "pipeline_others_unharmed"}, nil},
		{"2", []string{"actor_hostcalls"}, []string{"actor_hostcalls"}, nil},
		{"2", []string{"placement_groups"}, []string{"pg_created", "pg_ready", "task_in_bundle", "reservation_hides_cpus", "pg_removed", "cpus_back_after_removal", "spread_created", "strict_spread_infeasible_on_one_node", "bad_bundle_refused"}, nil},
		{"2", []string{"robust"}, []string{"orphan_submitted", "impatient_timed_out", "negative_demand_refused", "still_serving"}, nil},
		{"2", []string{"named"}, namedChecks, nil},
		{"2", []string{"infeasible"}, []string{"infeasible"}, []string{"task needs CPU: 1, GPU: 1 but no node can ever provide it"}},
		{"2", []string{"context"}, contextChecks, nil},
		{"2", []string{"mixed"}, []string{"wait_mixed_types", "get_mixed_types"}, nil},
		{"2", []string{"task_retries"}, []string{"actor_call_retried_after_restart"}, []string{"the call runs again when the actor has restarted"}},
		{"2", []string{"cancel_actor"}, []string{"cancel_queued_actor_call", "cancelled_actor_call_never_ran"}, nil},
		{"2", []string{"cluster"}, []string{"cluster_nodes", "cluster_resources"}, []string{"cluster: 1 nodes, CPU 2\n"}},
		{"2", []string{"error_types"}, errorChecks, nil},
		{"2", []string{"scheduling"}, schedulingChecks, nil},
		{"2", []string{"util"}, utilChecks, nil},
		{"2", []string{"pg_ready_ref"}, []string{"pg_ready_ref_in_wait", "pg_ready_ref_never"}, nil},
		{"2", []string{"pg_named"}, pgNamedChecks, []string{"pg trainers: created on 1, bundles [map[CPU:0.5]]"}},
		{"2", []string{"async_actor", "concurrency_groups"}, asyncChecks, []string{"async: 100 calls of 1 s on one actor took"}},
		{"2", []string{"generator_stream", "generators"}, generatorChecks, []string{"generator: first of 10 values after"}},
		{"2", []string{"namespaces"}, []string{"actor_found_in_namespace", "named_actors_listed", "detached_needs_a_name", "detached_group_listed"}, []string{"(Keeper.add pid="}},
		{"2", []string{"method_options"}, methodOptionChecks, []string{"(short_nap pid=", "INFO: napping 1 ms"}},
		{"2", []string{"cancel_cooperative"}, cancelChecks, []string{"polite saw the cancel and returns", "patient's get returned: fabric: this task was cancelled"}},
		{"2", []string{"exits"}, exitChecks, []string{"task quitter exited (guest exited with code 3); retrying"}},
		{"2", []string{"multi", "retry_exceptions", "error_propagation", "put_get", "log"},
			[]string{"multiple_returns", "retry_exceptions", "error_propagates", "put_get_map", "put_get_big", "log"},
			[]string{"(logger pid=", "INFO: hello from a task", "WARN: careful, a task", "ERROR: an error line"}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, "+"), func(t *testing.T) {
			res := testrig.Run(t, 2*time.Minute, append([]string{"run", wasm, "--num-cpus", c.cpus, "--"}, c.args...)...)
			if res.Code != 0 || strings.Contains(res.Stdout, "FAIL:") {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(res.Stdout, "ok: "+w+"\n") {
					t.Errorf("no %q in:\n%s", "ok: "+w, res.Stdout)
				}
			}
			for _, w := range c.extra {
				if !strings.Contains(res.Stdout+res.Stderr, w) {
					t.Errorf("output lacks %q:\n%s\n%s", w, res.Stdout, res.Stderr)
				}
			}
		})
	}
}

// exitChecks are the features guest's checks of guests that exit: a task
// that calls os.Exit is retried under MaxRetries and fails as a dead
// worker; an actor method that does kills the call and restarts the
// actor.
var exitChecks = []string{"task_exit_is_a_worker_failure", "task_exit_retried", "actor_exit_kills_the_call", "actor_restarted_after_exit"}

// errorChecks are the features guest's checks of user error types: a
// registered type's value reaches the caller's errors.As, also passed on
// by a task in between; a registered sentinel reaches errors.Is; RetryOn
// and RetryExceptions with sentinels retry those errors and no others.
var errorChecks = []string{"error_type_as", "error_type_nested", "error_sentinel_is", "retry_on_type", "retry_on_sentinel", "no_retry_on_other_types"}

// cancelChecks are the features guest's checks of a cancel without force:
// a running task sees it (sdk.Cancelled), a task blocked in Get is woken,
// one that ignores it is stopped when its grace ends, and the node runs
// tasks afterwards.
var cancelChecks = []string{"cancel_seen_by_task", "cancel_ends_blocked_get", "cancel_stops_stubborn_task", "runs_after_cooperative_cancel"}

// schedulingChecks are the features guest's checks of scheduling
// options: hard node affinity to each node and to a missing one, soft
// affinity's fallback, SPREAD over every node, label selectors with each
// operator, and an unknown strategy refused.
var schedulingChecks = []string{"affinity_each_node", "affinity_missing_node_infeasible", "soft_affinity_falls_back", "spread_over_every_node", "label_operators", "unknown_strategy_refused"}

// methodOptionChecks are the features guest's checks of per-call options
// on an actor's method: a name for the call's output, and a timeout after
// which the actor restarts and serves again; and a method with three
// results.
var methodOptionChecks = []string{"method_call_named", "method_call_timeout", "actor_serves_after_call_timeout", "method_num_returns"}

// asyncChecks are the features guest's checks of concurrent (async)
// actors: 100 calls that each wait 1 s, served at once in under 2 s; a
// Get that parks only its call; each call's own task ID; a cancelled call
// that stops at its Get while the others go on; concurrency groups' limits.
var asyncChecks = []string{"async_100_calls_at_once", "async_100_calls_under_2s", "async_get_parks_only_its_call", "async_get_values", "async_many_wakeups",
	"async_calls_own_task_ids", "async_cancel_stops_at_park", "async_cancel_leaves_others",
	"default_group_beside_full_group", "concurrency_group_limit", "unknown_concurrency_group_fails"}

// generatorChecks are the features guest's checks of generators: the
// first of 10 values produced 1 s apart within 1.2 s, the values as they
// come, an error after k items keeping them, all references at the end,
// items too large to travel inline, an actor's generator method, and a
// cancelled generator.
var generatorChecks = []string{"generator_first_within_1200ms", "generator_values_stream", "generator_error_keeps_items",
	"generator_dynamic_refs", "generator_large_items", "generator_method", "generator_cancelled"}

// utilChecks are the features guest's checks of ray.util's counterparts:
// an actor pool's ordered map and unordered results, and a bounded queue
// between a producing task and the driver.
var utilChecks = []string{"pool_map_in_order", "pool_unordered", "queue_between_tasks", "queue_bounded"}

// pgNamedChecks are the features guest's checks of named placement
// groups: found by name, a name in use refused, the table of states, and
// a name free again once its group is removed.
var pgNamedChecks = []string{"pg_found_by_name", "pg_name_taken", "pg_table", "pg_name_free_after_removal"}

// contextChecks are the features guest's checks of the runtime context:
// the driver's, a task's (its ID, resources and attempt), an actor
// method's and that of a task in a placement group.
var contextChecks = []string{"context_driver", "context_task", "context_attempt", "context_actor", "context_placement_group"}

// namedChecks are the features guest's checks of named actors: a name is
// taken once, found, and free again as soon as its actor is killed.
var namedChecks = []string{"duplicate_name_refused", "named_lookup", "unknown_name", "kill", "call_after_kill", "name_free_after_kill", "get_if_exists"}

// TestDriverExit runs drivers that call os.Exit: with code 0 the job
// succeeded, with another code it failed, says the code, and fabric run
// exits with it.
func TestDriverExit(t *testing.T) {
	wasm := testrig.Guest(t, "internal/testguests/features")
	res := testrig.Run(t, time.Minute, "run", wasm, "--", "driver_exit", "0")
	if res.Code != 0 || !strings.Contains(res.Stdout, "driver exits with code 0") {
		t.Errorf("exit 0: exit %d\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
	res = testrig.Run(t, time.Minute, "run", wasm, "--", "driver_exit", "5")
	if res.Code != 5 || !strings.Contains(res.Stderr, "job failed: the driver exited with code 5") {
		t.Errorf("exit 5: exit %d\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
}

// TestTreeOfTasks runs Ray's tree-of-tasks pattern as a new user would,
// with `fabric run` on a 2-CPU node: a recursive quicksort of 8 million
// numbers, where every parent waits in get for its two children. Parents
// blocked in get give their CPU back and their processes do not count
// against the node's most, so the leaves get processes; before, the node
// ran out of processes full of waiting parents and the job hung until its
// timeout.
func TestTreeOfTasks(t *testing.T) {
	chaos := testrig.Guest(t, "internal/testguests/chaos")
	res := testrig.Run(t, 4*time.Minute, "run", "--num-cpus", "2", "--timeout", "200s", chaos, "--", "quicksort", "8000000")
	if res.Code != 0 || !strings.Contains(res.Stdout, "quicksort: 8000000 numbers sorted: true") {
		t.Fatalf("exit %d\nstdout:\n%.3000s\nstderr:\n%.3000s", res.Code, res.Stdout, res.Stderr)
	}
	t.Logf("%s(fabric run took %v)", res.Stdout, res.Elapsed.Round(time.Millisecond))
}
