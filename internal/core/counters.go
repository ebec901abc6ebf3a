package core

import (
	"maps"

	"github.com/wasmfabric/fabric/internal/wire"
)

// SchedBuckets are the upper bounds of the scheduling-latency histogram's
// buckets: how long a task waited from its submission to its placement.
var SchedBuckets = []Time{100e3, 500e3, 1e6, 5e6, 10e6, 50e6, 100e6, 500e6, 1e9, 5e9, 10e9, 60e9}

// Counters are the core's running totals since it started, for metrics.
type Counters struct {
	// TasksFinished and TasksFailed count tasks and actor calls (not
	// drivers) that ended; FailedByKind the failures by error kind.
	TasksFinished, TasksFailed uint64
	FailedByKind               map[string]uint64
	// TaskRetries counts the runs again of tasks whose worker or node
	// was lost (or that raised, with retry_exceptions).
	TaskRetries uint64
	// ActorRestarts counts the actors restarted after losing their
	// worker.
	ActorRestarts uint64
	// WorkersStarted counts the workers (sandbox instances) asked for.
	WorkersStarted uint64
	// ExecutionsFailed counts the executions on this node's workers that
	// ended without a value, by how: "app" (the guest returned an error
	// or panicked), "trap" (the sandbox trapped: an out-of-bounds access,
	// unreachable, a stack or memory limit), "exit" (the guest exited),
	// "interrupted" (stopped by a timeout, a cancel or a kill).
	ExecutionsFailed map[string]uint64
	// SchedCounts[i] counts the tasks placed within SchedBuckets[i] of
	// their submission (the last: later); SchedSum is their waits' sum.
	SchedCounts []uint64
	SchedSum    Time
}

// counters are a core's Counters as it keeps them.
type counters struct {
	Counters
	// ended counts, by tenant, the tasks and actor calls ended.
	byTenant map[string]*TenantTasks
}

// TenantTasks counts one tenant's tasks and actor calls (not drivers)
// that this node owns: those not ended, and those ended since the core
// started.
type TenantTasks struct {
	Pending, Running int
	Finished, Failed uint64
}

// TenantTasks counts the tasks and actor calls this node owns by tenant
// ("" the operator's): one pass over the live tasks.
func (c *Core) TenantTasks() map[string]TenantTasks {
	out := make(map[string]TenantTasks, len(c.counts.byTenant))
	for tenant, n := range c.counts.byTenant {
		out[tenant] = *n
	}
	for _, t := range c.tasks {
		if t.state == taskDone || t.asker != "" || t.kind == wire.ExecMain || t.kind == wire.ExecActorCreate {
			continue
		}
		n := out[t.job.tenant]
		if t.state == taskRunning {
			n.Running++
		} else {
			n.Pending++
		}
		out[t.job.tenant] = n
	}
	return out
}

func (n *counters) placed(t *task, now Time) {
	if t.kind != wire.ExecTask {
		return
	}
	if n.SchedCounts == nil {
		n.SchedCounts = make([]uint64, len(SchedBuckets)+1)
	}
	wait := max(0, now-t.submitted)
	i := 0
	for i < len(SchedBuckets) && wait > SchedBuckets[i] {
		i++
	}
	n.SchedCounts[i]++
	n.SchedSum += wait
}

func (n *counters) executionFailed(kind string) {
	if n.ExecutionsFailed == nil {
		n.ExecutionsFailed = map[string]uint64{}
	}
	if kind == "" {
		kind = "app"
	}
	n.ExecutionsFailed[kind]++
}

func (n *counters) ended(r *TaskRecord) {
	if r.Kind == "driver" || r.For != "" {
		return // a task another node sent here is counted by its owner
	}
	if n.byTenant == nil {
		n.byTenant = map[string]*TenantTasks{}
	}
	t := n.byTenant[r.Tenant]
	if t == nil {
		t = &TenantTasks{}
		n.byTenant[r.Tenant] = t
	}
	if r.State != TaskFailed {
		n.TasksFinished++
		t.Finished++
		return
	}
	n.TasksFailed++
	t.Failed++
	if n.FailedByKind == nil {
		n.FailedByKind = map[string]uint64{}
	}
	n.FailedByKind[r.ErrorKind]++
}

// Progress counts the tasks and actor calls (not drivers) this node
// owned: ended finished, ended failed, and not ended.
func (c *Core) Progress() (finished, failed, live int) {
	for _, t := range c.tasks {
		if t.state != taskDone && t.asker == "" && t.kind != wire.ExecMain && t.kind != wire.ExecActorCreate {
			live++
		}
	}
	return int(c.counts.TasksFinished), int(c.counts.TasksFailed), live
}

// Counters returns the core's running totals.
func (c *Core) Counters() Counters {
	out := c.counts.Counters
	out.FailedByKind = make(map[string]uint64, len(c.counts.FailedByKind))
	for k, v := range c.counts.FailedByKind {
		out.FailedByKind[k] = v
	}
	out.ExecutionsFailed = maps.Clone(c.counts.ExecutionsFailed)
	out.SchedCounts = append([]uint64(nil), c.counts.SchedCounts...)
	return out
}
