//go:build linux

package fabric

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/wasmfabric/fabric/internal/core"
)

// The node's recent past, for the dashboard's charts: every step (10 s)
// the agent samples its node (resources in use, the object store, worker
// processes and sandboxes, and each tenant's tasks) into a ring of an
// hour. Nothing is sent anywhere: GET /v1/history asks every node for its
// ring, as the state API does, and adds them up.

const (
	historyStep   = 10 * time.Second
	historyLength = 360 // an hour of steps
)

// nodeSample is one step's sample of a node, on the wire.
type nodeSample struct {
	_                   struct{} `cbor:",toarray"`
	T                   int64    // Unix seconds, a multiple of the step
	Used, Total         map[string]float64
	StoreUsed, StoreCap int64
	Processes           int
	Busy, Parked, Idle  int
	Tenants             map[string]tenantSample
}

// tenantSample counts a tenant's tasks on a node at a sample: not ended,
// and ended since the node started (counters: a step's difference is what
// ended in it).
type tenantSample struct {
	_                struct{} `cbor:",toarray"`
	Pending, Running int
	Finished, Failed uint64
}

// sampleRing keeps a node's last hour of samples.
type sampleRing struct {
	mu      sync.Mutex
	samples []nodeSample // oldest first
}

func (r *sampleRing) add(s nodeSample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.samples); n > 0 && r.samples[n-1].T >= s.T {
		r.samples[n-1] = s // the same step again: the newer reading
		return
	}
	if len(r.samples) == historyLength {
		r.samples = slices.Delete(r.samples, 0, 1)
	}
	r.samples = append(r.samples, s)
}

// since returns the samples from t on, each tenant's counts as f lets
// the caller see them.
func (r *sampleRing) since(t int64, f core.TaskFilter) []nodeSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, _ := slices.BinarySearchFunc(r.samples, t, func(s nodeSample, t int64) int { return cmp.Compare(s.T, t) })
	out := make([]nodeSample, 0, len(r.samples)-i)
	for _, s := range r.samples[i:] {
		if !f.AnyTenant {
			own, ok := s.Tenants[f.Tenant]
			s.Tenants = nil
			if ok {
				s.Tenants = map[string]tenantSample{f.Tenant: own}
			}
		}
		out = append(out, s)
	}
	return out
}

// sample reads the node now, at step t.
func (n *Node) sample(t int64) nodeSample {
	n.mu.Lock()
	st := n.core.Stats()
	tasks := n.core.TenantTasks()
	n.mu.Unlock()
	ss := n.store.Stats()
	s := nodeSample{T: t, Used: amounts(st.Total.Sub(st.Available)), Total: amounts(st.Total), StoreUsed: ss.Used + ss.SpilledBytes,
		StoreCap: ss.Capacity, Processes: n.pool.Count(), Busy: st.Busy, Parked: st.Parked, Idle: st.Idle, Tenants: map[string]tenantSample{}}
	for tenant, c := range tasks {
		s.Tenants[tenant] = tenantSample{Pending: c.Pending, Running: c.Running, Finished: c.Finished, Failed: c.Failed}
	}
	return s
}

// sampleHistory samples the node at each step until stop closes.
func (a *Agent) sampleHistory(step time.Duration, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		now := time.Now()
		a.node.history.add(a.node.sample(now.Truncate(step).Unix()))
		next := now.Truncate(step).Add(step)
		select {
		case <-stop:
			return
		case <-time.After(time.Until(next)):
		}
	}
}

// handleHistory answers the cluster's last window seconds (at most an
// hour): the nodes' samples added up at each step, and each node's
// latest. A tenant's token counts its own tasks only; resources and
// processes are the nodes', as /v1/status shows them.
func (a *Agent) handleHistory(w http.ResponseWriter, r *http.Request) {
	c := callerOf(r)
	release, ok := a.stateReads.acquire(c.tenant())
	if !ok {
		apiFail(w, a.stateReads.busy(c.tenant()))
		return
	}
	defer release()
	window := int64(historyLength) * int64(historyStep/time.Second)
	if s := r.URL.Query().Get("window"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 1 || v > window {
			apiFail(w, fmt.Errorf("%w: window %q: 1 to %d seconds", ErrBadRequest, s, window))
			return
		}
		window = v
	}
	step := a.historyStep()
	since := time.Now().Add(-time.Duration(window) * time.Second).Truncate(step).Unix()
	replies, missing := a.gatherTasks(r.Context(), c, taskQuery{History: since})
	out := HistoryView{Step: int(step / time.Second), Points: []HistoryPoint{}, Nodes: []NodeStats{}, Missing: missing}
	points := map[int64]*HistoryPoint{}
	for _, rep := range replies {
		var prev map[string]tenantSample
		for i, s := range rep.History {
			p := points[s.T]
			if p == nil {
				p = &HistoryPoint{Time: time.Unix(s.T, 0).UTC(), Used: map[string]float64{}, Total: map[string]float64{}}
				points[s.T] = p
			}
			p.Nodes++
			for k, v := range s.Used {
				p.Used[k] += v
			}
			for k, v := range s.Total {
				p.Total[k] += v
			}
			p.StoreUsed += s.StoreUsed
			p.StoreCapacity += s.StoreCap
			p.Processes += s.Processes
			for tenant, ts := range s.Tenants {
				p.Pending += ts.Pending
				p.Running += ts.Running
				if i > 0 { // what ended since the node's previous sample (none across a restart)
					before := prev[tenant]
					p.Finished += uint64(max(0, int64(ts.Finished)-int64(before.Finished)))
					p.Failed += uint64(max(0, int64(ts.Failed)-int64(before.Failed)))
				}
			}
			prev = s.Tenants
			if i == len(rep.History)-1 {
				rtt, _ := a.members.RTT(rep.Node)
				out.Nodes = append(out.Nodes, NodeStats{Node: rep.Node, Time: p.Time, StoreUsed: s.StoreUsed, StoreCapacity: s.StoreCap,
					Processes: s.Processes, Busy: s.Busy, Parked: s.Parked, Idle: s.Idle, RTT: rtt.Seconds() * 1000})
			}
		}
	}
	for _, t := range slices.Sorted(maps.Keys(points)) {
		out.Points = append(out.Points, *points[t])
	}
	slices.SortFunc(out.Nodes, func(a, b NodeStats) int { return cmp.Compare(a.Node, b.Node) })
	writeJSON(w, out)
}

// historyStep is the agent's sampling step (shorter in tests).
func (a *Agent) historyStep() time.Duration { return cmp.Or(a.cfg.historyStep, historyStep) }
