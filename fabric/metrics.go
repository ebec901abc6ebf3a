//go:build linux

package fabric

import (
	"net/http"
	"sync"
	"time"

	gometrics "github.com/hashicorp/go-metrics"
	gometricsprom "github.com/hashicorp/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/wasmfabric/fabric/internal/core"
	"github.com/wasmfabric/fabric/internal/membership"
)

// An agent's metrics are read when Prometheus scrapes /metrics, from the
// counters its parts keep (the core's, the object store's, the peer
// link's, the worker pool's, the membership's): nothing is counted twice
// and nothing runs between scrapes. docs/METRICS.md lists them.

// gossipSink is the process's go-metrics sink, where serf and memberlist
// put their metrics, made once: their go-metrics are process-wide, so
// agents that share a process share them.
var gossipSink = sync.OnceValue(func() *gometricsprom.PrometheusSink {
	sink, err := gometricsprom.NewPrometheusSinkFrom(gometricsprom.PrometheusOpts{Expiration: time.Hour, Registerer: prometheus.NewRegistry()})
	if err != nil {
		return nil
	}
	cfg := gometrics.DefaultConfig("fabric")
	cfg.EnableHostname, cfg.EnableRuntimeMetrics, cfg.EnableServiceLabel = false, false, false
	if _, err := gometrics.NewGlobal(cfg, sink); err != nil {
		return nil
	}
	return sink
})

// metricsRegistry makes the agent's registry: its own collector, the Go
// runtime's and the process's, and the gossip layer's.
func (a *Agent) metricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(agentCollector{a}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if sink := gossipSink(); sink != nil {
		_ = reg.Register(sink)
	}
	return reg
}

func (a *Agent) handleMetrics(w http.ResponseWriter, r *http.Request) {
	a.metricsOnce.Do(func() {
		a.metricsHandler = promhttp.HandlerFor(a.metricsRegistry(), promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: 2})
	})
	a.metricsHandler.ServeHTTP(w, r)
}

// agentCollector collects an agent's metrics at each scrape.
type agentCollector struct{ a *Agent }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("fabric_"+name, help, labels, nil)
}

var (
	descTasks          = desc("tasks", "Tasks (and actor calls and drivers) on this node by state: pending (waiting for arguments or resources) and live (placed or pending).", "state")
	descTasksEnded     = desc("tasks_ended_total", "Tasks and actor calls (not drivers) this node owned that ended, by result: finished or failed.", "result")
	descTasksFailed    = desc("tasks_failed_total", "Tasks this node owned that failed, by error type (task: the guest's error, panic or trap; worker_died: its worker lost; timeout; ...).", "error_type")
	descTaskRetries    = desc("task_retries_total", "Runs again of tasks whose worker or node was lost, or that raised with retry_exceptions.")
	descSched          = desc("task_scheduling_seconds", "How long tasks waited from their submission to their placement, on the node that owned them.")
	descActorRestarts  = desc("actor_restarts_total", "Actors restarted after losing their worker.")
	descWorkersStarted = desc("sandbox_instantiations_total", "Workers (sandbox instances of a job's module) the node asked for.")
	descWorkers        = desc("workers", "Workers (sandbox instances) by state: busy (running an execution or an actor), parked (of the busy, blocked in get or wait), idle.", "state")
	descProcesses      = desc("worker_processes", "Worker processes hosting the node's sandboxes.")
	descJobs           = desc("jobs", "Jobs with work on this node.")
	descObjects        = desc("objects", "Object records the node's core holds.")
	descHeap           = desc("heap_bytes", "Bytes of small values and task arguments the core holds in the agent's memory.")
	descStoreBytes     = desc("object_store_bytes", "The object store's arena: capacity and used bytes, and bytes of objects held only in spill files.", "kind")
	descStoreObjects   = desc("object_store_objects", "Objects the store holds, by where: arena or spilled.", "where")
	descSpills         = desc("object_spills_total", "Objects moved from the arena to a spill file.")
	descRestores       = desc("object_restores_total", "Objects moved back from a spill file to the arena.")
	descResources      = desc("resources", "The node's resources (CPU and GPU as counts, memory in bytes): total and used.", "resource", "kind")
	descPeerMessages   = desc("peer_messages_total", "Messages between this node and its peers, by what happened: sent (acknowledged), received, dropped (peer gone), refused.", "event")
	descPeerBatches    = desc("peer_batches_total", "Batches of peer messages acknowledged, and sent again after a failure.", "event")
	descExecFailed     = desc("sandbox_failures_total", "Executions on this node's sandboxes that ended without a value, by how: app (the guest's error or panic), trap (out-of-bounds access, unreachable, a stack or memory limit), exit, interrupted (a timeout, cancel or kill).", "kind")
	descTransfers      = desc("object_transfers_total", "Object transfers between this node and its peers: in (objects pulled; result ok or failed), out (ranges of objects served).", "direction", "result")
	descTransferBytes  = desc("object_transfer_bytes_total", "Bytes of objects moved: in (pulled), out (served); rate() gives the transfer rate.", "direction")
	descTransferWire   = desc("object_transfer_wire_bytes_total", "Bytes of object chunks received on the wire, after compression.")
	descMembers        = desc("cluster_members", "The cluster's members as this node's gossip sees them, by status.", "status")
)

func (c agentCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c agentCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	n := a.node
	n.mu.Lock()
	st := n.core.Stats()
	counts := n.core.Counters()
	n.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descTasks, float64(st.Queued), "pending")
	gauge(descTasks, float64(st.Tasks), "live")
	counter(descTasksEnded, float64(counts.TasksFinished), "finished")
	counter(descTasksEnded, float64(counts.TasksFailed), "failed")
	for kind, v := range counts.FailedByKind {
		counter(descTasksFailed, float64(v), kind)
	}
	counter(descTaskRetries, float64(counts.TaskRetries))
	buckets := map[float64]uint64{}
	var cum uint64
	for i, b := range core.SchedBuckets {
		if i < len(counts.SchedCounts) {
			cum += counts.SchedCounts[i]
		}
		buckets[time.Duration(b).Seconds()] = cum
	}
	if len(counts.SchedCounts) > len(core.SchedBuckets) {
		cum += counts.SchedCounts[len(core.SchedBuckets)]
	}
	ch <- prometheus.MustNewConstHistogram(descSched, cum, time.Duration(counts.SchedSum).Seconds(), buckets)
	counter(descActorRestarts, float64(counts.ActorRestarts))
	counter(descWorkersStarted, float64(counts.WorkersStarted))
	for _, kind := range []string{"app", "trap", "exit", "interrupted"} { // each, even at 0
		counter(descExecFailed, float64(counts.ExecutionsFailed[kind]), kind)
	}
	gauge(descWorkers, float64(st.Busy), "busy")
	gauge(descWorkers, float64(st.Parked), "parked")
	gauge(descWorkers, float64(st.Idle), "idle")
	gauge(descProcesses, float64(n.pool.Count()))
	gauge(descJobs, float64(st.Jobs))
	gauge(descObjects, float64(st.Objects))
	gauge(descHeap, float64(st.Heap))
	ss := n.store.Stats()
	gauge(descStoreBytes, float64(ss.Capacity), "capacity")
	gauge(descStoreBytes, float64(ss.Used), "used")
	gauge(descStoreBytes, float64(ss.SpilledBytes), "spilled")
	gauge(descStoreObjects, float64(ss.Objects-ss.SpilledObjects), "arena")
	gauge(descStoreObjects, float64(ss.SpilledObjects), "spilled")
	counter(descSpills, float64(ss.SpillCount))
	counter(descRestores, float64(ss.RestoreCount))
	total, used := amounts(st.Total), amounts(st.Total.Sub(st.Available))
	for res, v := range total {
		gauge(descResources, v, res, "total")
		gauge(descResources, used[res], res, "used")
	}
	if a.link != nil {
		ls := a.link.Stats()
		counter(descPeerMessages, float64(ls.Sent), "sent")
		counter(descPeerMessages, float64(ls.Received), "received")
		counter(descPeerMessages, float64(ls.Dropped), "dropped")
		counter(descPeerMessages, float64(ls.Refused), "refused")
		counter(descPeerBatches, float64(ls.Batches), "acknowledged")
		counter(descPeerBatches, float64(ls.Retries), "retried")
	}
	if a.quic != nil {
		ts := a.quic.Transfers()
		counter(descTransfers, float64(ts.Pulls), "in", "ok")
		counter(descTransfers, float64(ts.PullsFailed), "in", "failed")
		counter(descTransfers, float64(ts.Served), "out", "ok")
		counter(descTransfers, float64(ts.ServeFailed), "out", "failed")
		counter(descTransferBytes, float64(ts.PulledBytes), "in")
		counter(descTransferBytes, float64(ts.ServedBytes), "out")
		counter(descTransferWire, float64(ts.PulledWire))
	}
	byStatus := map[string]int{string(membership.Alive): 0}
	a.tableMu.RLock()
	for _, m := range a.table {
		byStatus[string(m.Status)]++
	}
	a.tableMu.RUnlock()
	for s, v := range byStatus {
		gauge(descMembers, float64(v), s)
	}
}
