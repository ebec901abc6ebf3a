//go:build linux

package fabric

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/core"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/transport"
	"github.com/wasmfabric/fabric/internal/wire"
)

// Serve's deployments on the agents. The control state holds them; each
// agent reads them every second (serveInterval), works out which of their
// replicas are its own (assign: the same answer on every agent from the
// same alive members), hosts those in replica sets, and routes its
// ingress's requests to the agents that host replicas, itself included.

const (
	serveInterval = time.Second
	// msgServe carries a request to an agent that hosts a deployment's
	// replicas, or asks it what it hosts.
	msgServe transport.Type = 32
	// msgServeStream carries a request to a deployment that streams its
	// responses: a stream whose first frame is a serveCall, answered by
	// the response's items and its end (serveFrame).
	msgServeStream transport.Type = 33
	// defaultMaxOngoing is a replica's max ongoing requests when the
	// deployment does not say (Ray Serve's default).
	defaultMaxOngoing = 5
)

// assign spreads a deployment's replicas over the alive nodes: node i of
// the sorted list, from an offset the deployment's key picks, takes
// replica i, round and round. Every agent computes the same from the same
// members.
func assign(key string, replicas int, nodes []string) map[string]int {
	out := map[string]int{}
	if len(nodes) == 0 {
		return out
	}
	sorted := slices.Sorted(slices.Values(nodes))
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	off := int(h.Sum32() % uint32(len(sorted)))
	for i := range replicas {
		out[sorted[(off+i)%len(sorted)]]++
	}
	return out
}

// serveState is an agent's view of the deployments and what it hosts.
type serveState struct {
	// kick asks serveLoop for a step now (a replica died, a deployment
	// changed) rather than at its next tick.
	kick   chan struct{}
	mu     sync.Mutex
	deps   map[string]controlstate.Deployment // by key
	placed map[string]map[string]int          // by key: replicas by node
	sets   map[string]*replicaSet             // by key: the replicas hosted here
	vers   map[string]uint64                  // by key: the version the set runs
	// stepped is closed (and replaced) at the end of each serveStep.
	stepped chan struct{}
	// refreshing is set while a route miss waits for a step; refreshed
	// is when the last one began (unix nanoseconds).
	refreshing atomic.Bool
	refreshed  atomic.Int64
	// streams holds the keys of deployments that stream their responses
	// (a hosting node said so): requests to other nodes' replicas go over
	// msgServeStream at once.
	streams sync.Map
}

// serveLoop reconciles the deployments every serveInterval until stop.
func (a *Agent) serveLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(serveInterval)
	defer t.Stop()
	sampling := make(chan struct{})
	defer close(sampling)
	go a.sampleLoads(sampling)
	for {
		a.serveStep(context.Background())
		a.autoscale(context.Background())
		select {
		case <-a.serve.kick:
		case <-stop:
			a.serve.mu.Lock()
			sets := slices.Collect(maps.Values(a.serve.sets))
			a.serve.sets = map[string]*replicaSet{}
			a.serve.mu.Unlock()
			for _, rs := range sets {
				rs.close()
			}
			return
		case <-t.C:
		}
	}
}

// sampleLoads samples the load of the replica sets every loadSample
// until stop.
func (a *Agent) sampleLoads(stop <-chan struct{}) {
	t := time.NewTicker(loadSample)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		a.serve.mu.Lock()
		sets := slices.Collect(maps.Values(a.serve.sets))
		a.serve.mu.Unlock()
		for _, rs := range sets {
			rs.sample()
		}
	}
}

// kickServe asks for a reconciling step now.
func (a *Agent) kickServe() {
	select {
	case a.serve.kick <- struct{}{}:
	default:
	}
}

// serveStep reads the deployments and makes this node host its share.
func (a *Agent) serveStep(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ans, err := a.control(ctx, controlRequest{Op: "deployments"})
	if err != nil {
		return // no leader now: keep what runs
	}
	alive := a.aliveMembers(true)
	deps := map[string]controlstate.Deployment{}
	placed := map[string]map[string]int{}
	for _, d := range ans.Deployments {
		deps[d.Key] = d
		placed[d.Key] = assign(d.Key, d.Replicas, alive)
	}
	s := &a.serve
	s.mu.Lock()
	s.deps, s.placed = deps, placed
	var stale []*replicaSet
	for key, rs := range s.sets {
		if d, ok := deps[key]; !ok || s.vers[key] != d.Version {
			stale = append(stale, rs)
			delete(s.sets, key)
			delete(s.vers, key)
		}
	}
	type want struct {
		d    controlstate.Deployment
		rs   *replicaSet
		have int
	}
	var wants []want
	for key, d := range deps {
		n := placed[key][a.ID]
		rs := s.sets[key]
		have := 0
		if rs != nil {
			have = rs.alive()
		}
		if n != have || rs == nil && n > 0 {
			wants = append(wants, want{d, rs, have})
		}
	}
	s.mu.Unlock()
	for _, rs := range stale {
		rs.close()
	}
	for _, w := range wants {
		a.hostReplicas(ctx, w.d, w.rs, placed[w.d.Key][a.ID])
	}
	s.mu.Lock()
	close(s.stepped)
	s.stepped = make(chan struct{})
	s.mu.Unlock()
}

// serveStepped returns a channel closed once serveStep next ends: a
// request that woke a deployment waits on it for its replica's place.
func (a *Agent) serveStepped() <-chan struct{} {
	a.serve.mu.Lock()
	defer a.serve.mu.Unlock()
	return a.serve.stepped
}

// hostReplicas brings the replicas of d hosted here to n.
func (a *Agent) hostReplicas(ctx context.Context, d controlstate.Deployment, rs *replicaSet, n int) {
	if rs == nil {
		if n == 0 {
			return
		}
		opts := abi.Options{MaxConcurrency: d.MaxOngoing, Namespace: abi.ServeNamespace}
		if cpu, ok := d.Resources["CPU"]; ok {
			opts.CPU = &cpu
		}
		opts.GPU, opts.Memory = d.Resources["GPU"], int64(d.Resources["memory"])
		for k, v := range d.Resources {
			if k != "CPU" && k != "GPU" && k != "memory" {
				if opts.Resources == nil {
					opts.Resources = map[string]float64{}
				}
				opts.Resources[k] = v
			}
		}
		var err error
		if rs, err = a.newReplicaSet(ctx, d.Tenant, d.Digest, d.Class, opts); err != nil {
			a.warnf("fabric serve: deployment %s: cannot host its replicas here: %v", d.Key, err)
			return
		}
		rs.maxOngoing = d.MaxOngoing
		a.serve.mu.Lock()
		a.serve.sets[d.Key], a.serve.vers[d.Key] = rs, d.Version
		a.serve.mu.Unlock()
	}
	rs.prune()
	for range n - rs.alive() {
		r := rs.reserve() // at once: a request that comes now waits for it
		if r == nil {
			return
		}
		go func() {
			if err := rs.create(r); err != nil && !errors.Is(err, context.Canceled) {
				a.warnf("fabric serve: deployment %s: a replica did not start: %v", d.Key, err)
			}
		}()
	}
	for rs.alive() > n {
		rs.remove()
	}
}

// route finds the deployment whose route prefix is the longest that
// matches path.
func (a *Agent) route(path string) (controlstate.Deployment, map[string]int, bool) {
	a.serve.mu.Lock()
	defer a.serve.mu.Unlock()
	var best controlstate.Deployment
	found := false
	for _, d := range a.serve.deps {
		if routeMatches(d.Route, path) && (!found || len(d.Route) > len(best.Route)) {
			best, found = d, true
		}
	}
	return best, maps.Clone(a.serve.placed[best.Key]), found
}

// routeRefresh bounds how often a route miss asks for a step.
const routeRefresh = 200 * time.Millisecond

// routeFresh is route for a request: when path matches no deployment this
// agent knows, it has the serve loop step now (reading the deployments)
// and looks again, so that a deployment made a moment ago answers at once
// on every agent. One such wait runs at a time, and one begins per
// routeRefresh at most: a flood of unknown paths costs nothing more.
func (a *Agent) routeFresh(ctx context.Context, path string) (controlstate.Deployment, map[string]int, bool) {
	d, placed, ok := a.route(path)
	if ok || !a.serve.refreshing.CompareAndSwap(false, true) {
		return d, placed, ok
	}
	defer a.serve.refreshing.Store(false)
	now := time.Now().UnixNano()
	if now-a.serve.refreshed.Load() < int64(routeRefresh) {
		return d, placed, ok
	}
	a.serve.refreshed.Store(now)
	stepped := a.serveStepped()
	a.kickServe()
	select {
	case <-stepped:
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
	}
	return a.route(path)
}

// routeMatches reports whether a request path is under a route prefix.
func routeMatches(route, path string) bool {
	return route == "/" || path == route || strings.HasPrefix(path, route+"/")
}

// localSet is the replica set of key hosted here.
func (a *Agent) localSet(key string) *replicaSet {
	a.serve.mu.Lock()
	defer a.serve.mu.Unlock()
	return a.serve.sets[key]
}

// serveCall is msgServe's body.
type serveCall struct {
	_       struct{} `cbor:",toarray"`
	Key     string   // the deployment
	Request abi.ServeRequest
	Status  bool // what the node hosts, not a request
	Pick    bool // a ready replica of Key for a lookup, not a request
	Logs    bool // the latest output of Key's replicas here
}

// serveAnswer is msgServe's answer.
type serveAnswer struct {
	_        struct{} `cbor:",toarray"`
	Response abi.ServeResponse
	Code     int // an error's HTTP status (0: Response is the replica's)
	Error    string
	Hosted   []hostedWire
	Replica  []byte // Pick's answer: the replica's actor ID
	Stream   bool   // the deployment streams: ask again with msgServeStream
	Logs     []byte // Logs' answer
}

// hostedWire is what a node hosts of a deployment.
type hostedWire struct {
	_                       struct{} `cbor:",toarray"`
	Key                     string
	Version                 uint64
	Alive, Ongoing, Started int
	Starting                int // alive, not yet ready
	// Load is the requests and calls its replicas held on average over
	// the last second; Active says that some came in it.
	Load   float64
	Active bool
}

// pickReplica answers a lookup of a deployment's name in
// abi.ServeNamespace (a replica's guest composing deployments): a ready
// replica of the tenant's deployment, on this node when it hosts one,
// else on a node that does, chosen as the ingress chooses; a deployment
// scaled to zero is woken. It answers nil when the tenant has no such
// deployment.
func (a *Agent) pickReplica(ctx context.Context, tenant, name string) (*core.NamedActor, error) {
	key := controlstate.JobKey(tenant, name)
	ctx, cancel := context.WithTimeout(ctx, coldStartWait)
	defer cancel()
	woke := false
	for {
		a.serve.mu.Lock()
		d, ok := a.serve.deps[key]
		placed := maps.Clone(a.serve.placed[key])
		a.serve.mu.Unlock()
		if !ok {
			return nil, nil
		}
		local := a.localSet(key)
		if local != nil && local.ready() > 0 {
			if r, _ := local.pick(); r != nil {
				return &core.NamedActor{Actor: r.id, Node: core.NodeID(a.ID), Class: d.Class, Local: true}, nil
			}
		}
		stepped := a.serveStepped() // before a wake, whose step may end at once
		node := a.nodeFor(placed)
		switch {
		case node == "" && d.Autoscaling != nil && !woke:
			if err := a.wake(ctx, d); err != nil {
				return nil, fmt.Errorf("deployment %s is scaled to zero and could not start a replica: %w", name, err)
			}
			woke = true
		case node == "" && !woke:
			return nil, fmt.Errorf("deployment %s has no replicas (num_replicas 0, or no node alive)", name)
		case node == a.ID && local != nil:
			r, err := local.pickWait(ctx)
			if err == nil {
				return &core.NamedActor{Actor: r.id, Node: core.NodeID(a.ID), Class: d.Class, Local: true}, nil
			}
		case node != "" && node != a.ID:
			if id, err := a.pickRemote(ctx, node, key); err == nil {
				return &core.NamedActor{Actor: id, Node: core.NodeID(node), Class: d.Class}, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("deployment %s: no replica was ready within %s", name, coldStartWait)
		case <-stepped:
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// pickRemote asks node for a ready replica of the deployment key.
func (a *Agent) pickRemote(ctx context.Context, node, key string) (objects.ID, error) {
	ans, err := a.askServe(ctx, node, serveCall{Key: key, Pick: true})
	if err != nil {
		return objects.NilID, err
	}
	if ans.Error != "" {
		return objects.NilID, errors.New(ans.Error)
	}
	return objects.IDFromBytes(ans.Replica)
}

// handleServePeer answers another agent's msgServe.
func (a *Agent) handleServePeer(ctx context.Context, body []byte) ([]byte, error) {
	var c serveCall
	if err := wire.Unmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("a malformed serve call: %v", err)
	}
	if c.Status {
		return wire.Marshal(serveAnswer{Hosted: a.hosted()})
	}
	if c.Logs {
		var ans serveAnswer
		if rs := a.localSet(c.Key); rs != nil {
			ans.Logs = rs.logs.bytes()
		}
		return wire.Marshal(ans)
	}
	if c.Pick {
		var ans serveAnswer
		if rs := a.localSet(c.Key); rs == nil {
			ans.Error = fmt.Sprintf("deployment %s has no replica on node %s", c.Key, a.ID)
		} else if r, err := rs.pickWait(ctx); err != nil {
			ans.Error = err.Error()
		} else {
			ans.Replica = r.id[:]
		}
		return wire.Marshal(ans)
	}
	resp, code, err := a.callLocal(ctx, c.Key, c.Request, nil)
	ans := serveAnswer{Response: resp, Code: code}
	if errors.Is(err, errStreams) {
		return wire.Marshal(serveAnswer{Stream: true})
	}
	if err != nil {
		ans.Error = err.Error()
	}
	return wire.Marshal(ans)
}

// hosted lists the replica sets hosted here.
func (a *Agent) hosted() []hostedWire {
	a.serve.mu.Lock()
	defer a.serve.mu.Unlock()
	var out []hostedWire
	for key, rs := range a.serve.sets {
		load, active := rs.load()
		out = append(out, hostedWire{Key: key, Version: a.serve.vers[key], Alive: rs.ready(), Starting: rs.alive() - rs.ready(), Ongoing: int(rs.ongoing()),
			Started: int(rs.started.Load()), Load: load, Active: active})
	}
	return out
}

func deploymentInfo(d controlstate.Deployment, c caller) DeploymentInfo {
	name := d.Key
	if !c.cluster {
		name = controlstate.JobName(d.Key)
	}
	return DeploymentInfo{Name: name, Tenant: d.Tenant, Module: d.Digest, Class: d.Class, RoutePrefix: d.Route, NumReplicas: d.Replicas,
		MaxOngoingRequests: d.MaxOngoing, Resources: d.Resources, Public: d.Public, Version: d.Version,
		Created: time.UnixMilli(d.Created).UTC(), Updated: time.UnixMilli(d.Updated).UTC(), Nodes: map[string]int{},
		AutoscalingConfig: autoscalingConfig(d.Autoscaling)}
}

func autoscalingConfig(as *controlstate.Autoscaling) *AutoscalingConfig {
	if as == nil {
		return nil
	}
	up, down := float64(as.UpscaleDelay)/1000, float64(as.DownscaleDelay)/1000
	return &AutoscalingConfig{MinReplicas: as.MinReplicas, MaxReplicas: as.MaxReplicas, TargetOngoingRequests: as.TargetOngoing,
		UpscaleDelayS: &up, DownscaleDelayS: &down}
}

// Autoscaling's defaults.
const (
	defaultTargetOngoing  = 2
	defaultUpscaleDelay   = 3 * time.Second
	defaultDownscaleDelay = 60 * time.Second
)

// autoscaler remembers, on the leader, since when each deployment has
// wanted more or fewer replicas.
type autoscaler struct {
	mu   sync.Mutex
	want map[string]scaleWish // by deployment key
}

type scaleWish struct {
	replicas int
	since    time.Time
}

// desiredReplicas is how many replicas carry the load (the requests and
// calls held on average) at target each, within the bounds, and one at
// least while requests come.
func desiredReplicas(as controlstate.Autoscaling, load float64, active bool) int {
	n := int(math.Ceil(load / as.TargetOngoing))
	if active {
		n = max(n, 1) // requests came: not zero, however quick they are
	}
	return min(max(n, as.MinReplicas), as.MaxReplicas)
}

// autoscale runs on the leader: it reads the requests in flight for each
// autoscaled deployment from every node and changes its replicas once it
// has wanted the change for the deployment's delay.
func (a *Agent) autoscale(ctx context.Context) {
	if a.ctl == nil || !a.ctl.IsLeader() {
		return
	}
	var deps []controlstate.Deployment
	if err := a.ctl.Read(controlTimeout, func(s *controlstate.State) { deps = s.Deployments() }); err != nil {
		return
	}
	var auto []controlstate.Deployment
	for _, d := range deps {
		if d.Autoscaling != nil {
			auto = append(auto, d)
		}
	}
	if len(auto) == 0 {
		return
	}
	hosted, _ := a.gatherHosted(ctx)
	now := time.Now()
	as := &a.autoscaler
	as.mu.Lock()
	if as.want == nil {
		as.want = map[string]scaleWish{}
	}
	var scales []controlstate.ScaleDeployment
	for _, d := range auto {
		load, active := 0.0, false
		for _, hs := range hosted {
			for _, h := range hs {
				if h.Key == d.Key && h.Version == d.Version {
					load += h.Load
					active = active || h.Active || h.Starting > 0 // a replica starting was wanted (a wake): no load is seen yet
				}
			}
		}
		want := desiredReplicas(*d.Autoscaling, load, active)
		if want == d.Replicas {
			delete(as.want, d.Key)
			continue
		}
		w, ok := as.want[d.Key]
		if !ok || (w.replicas > d.Replicas) != (want > d.Replicas) {
			w = scaleWish{since: now} // wanting the other way now: the delay starts again
		}
		w.replicas = want
		as.want[d.Key] = w
		delay := time.Duration(d.Autoscaling.DownscaleDelay) * time.Millisecond
		if want > d.Replicas {
			delay = time.Duration(d.Autoscaling.UpscaleDelay) * time.Millisecond
		}
		if now.Sub(w.since) >= delay {
			scales = append(scales, controlstate.ScaleDeployment{Key: d.Key, Version: d.Version, Replicas: want, Time: now.UnixMilli()})
			delete(as.want, d.Key)
		}
	}
	as.mu.Unlock()
	for _, sc := range scales {
		if err := a.propose(ctx, controlstate.Command{ScaleDeployment: &sc}); err != nil {
			a.warnf("fabric serve: scaling %s to %d replicas: %v", sc.Key, sc.Replicas, err)
			continue
		}
		a.log.Info("deployment scaled", "deployment", sc.Key, "replicas", sc.Replicas)
	}
}

// wake scales a deployment at zero replicas to its least above zero, for
// a request that arrived.
func (a *Agent) wake(ctx context.Context, d controlstate.Deployment) error {
	sc := controlstate.ScaleDeployment{Key: d.Key, Version: d.Version, Replicas: max(1, d.Autoscaling.MinReplicas), Time: nowMillis()}
	err := a.propose(ctx, controlstate.Command{ScaleDeployment: &sc})
	if err != nil && !errors.Is(err, ErrStale) {
		return err
	}
	a.kickServe()
	return nil
}

func (a *Agent) handleDeploymentPut(w http.ResponseWriter, r *http.Request) {
	c := callerOf(r)
	var spec DeploymentSpec
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		apiFail(w, fmt.Errorf("%w: the body is a deployment's JSON {\"module\", \"class\", \"route_prefix\", \"num_replicas\", ...}: %v", ErrBadRequest, err))
		return
	}
	name := r.PathValue("name")
	if spec.Name != "" && spec.Name != name {
		apiFail(w, fmt.Errorf("%w: the body names deployment %q, the path %q", ErrBadRequest, spec.Name, name))
		return
	}
	d := controlstate.Deployment{Key: controlstate.JobKey(c.tenant(), name), Tenant: c.tenant(), Digest: spec.Module, Class: spec.Class,
		Route: spec.RoutePrefix, Replicas: 1, MaxOngoing: cmp.Or(spec.MaxOngoingRequests, defaultMaxOngoing), Resources: spec.Resources, Public: spec.Public}
	if as := spec.AutoscalingConfig; as != nil {
		d.Autoscaling = &controlstate.Autoscaling{MinReplicas: as.MinReplicas, MaxReplicas: as.MaxReplicas,
			TargetOngoing: cmp.Or(as.TargetOngoingRequests, defaultTargetOngoing), UpscaleDelay: defaultUpscaleDelay.Milliseconds(),
			DownscaleDelay: defaultDownscaleDelay.Milliseconds()}
		if as.UpscaleDelayS != nil {
			d.Autoscaling.UpscaleDelay = int64(*as.UpscaleDelayS * 1000)
		}
		if as.DownscaleDelayS != nil {
			d.Autoscaling.DownscaleDelay = int64(*as.DownscaleDelayS * 1000)
		}
		d.Replicas = as.MinReplicas // Ray's initial_replicas: min_replicas
	}
	if spec.NumReplicas != nil {
		d.Replicas = *spec.NumReplicas
	}
	if d.Route == "" {
		d.Route = "/" + name
	}
	if err := a.propose(r.Context(), controlstate.Command{PutDeployment: &controlstate.PutDeployment{Deployment: d, Time: nowMillis()}}); err != nil {
		apiFail(w, err)
		return
	}
	ans, err := a.control(r.Context(), controlRequest{Op: "deployments"})
	if err != nil {
		apiFail(w, err)
		return
	}
	for _, got := range ans.Deployments {
		if got.Key == d.Key {
			a.log.Info("deployment put", "deployment", d.Key, "route", d.Route, "replicas", d.Replicas, "version", got.Version)
			writeJSON(w, deploymentInfo(got, c))
			a.kickServe() // host it without waiting for the tick
			return
		}
	}
	apiFail(w, fmt.Errorf("%w: %q", ErrNoDeployment, name))
}

// handleDeploymentLogs answers the latest output of a deployment's
// replicas on every node that hosts them (each node keeps the last 64
// KiB of its own).
func (a *Agent) handleDeploymentLogs(w http.ResponseWriter, r *http.Request) {
	c := callerOf(r)
	key := controlstate.JobKey(c.tenant(), r.PathValue("name"))
	if c.cluster && strings.Contains(r.PathValue("name"), ":") {
		key = r.PathValue("name") // the operator names a tenant's as tenant:name
	}
	ans, err := a.control(r.Context(), controlRequest{Op: "deployments"})
	if err != nil {
		apiFail(w, err)
		return
	}
	if !slices.ContainsFunc(ans.Deployments, func(d controlstate.Deployment) bool { return d.Key == key }) {
		apiFail(w, fmt.Errorf("%w: %q", ErrNoDeployment, r.PathValue("name")))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), stateTimeout)
	defer cancel()
	out := DeploymentLogs{Nodes: map[string]string{}}
	if rs := a.localSet(key); rs != nil {
		out.Nodes[a.ID] = string(rs.logs.bytes())
	}
	answers, missing := a.askServeAll(ctx, serveCall{Key: key, Logs: true})
	for id, ans := range answers {
		if len(ans.Logs) > 0 {
			out.Nodes[id] = string(ans.Logs)
		}
	}
	out.Missing = missing
	writeJSON(w, out)
}

func (a *Agent) handleDeploymentDelete(w http.ResponseWriter, r *http.Request) {
	c := callerOf(r)
	key := controlstate.JobKey(c.tenant(), r.PathValue("name"))
	if c.cluster && strings.Contains(r.PathValue("name"), ":") {
		key = r.PathValue("name") // the operator names a tenant's as tenant:name
	}
	if err := a.propose(r.Context(), controlstate.Command{DeleteDeployment: &controlstate.DeleteDeployment{Key: key}}); err != nil {
		apiFail(w, err)
		return
	}
	a.kickServe()
	w.WriteHeader(http.StatusNoContent)
}

func (a *Agent) handleDeploymentList(w http.ResponseWriter, r *http.Request) {
	c := callerOf(r)
	ans, err := a.control(r.Context(), controlRequest{Op: "deployments"})
	if err != nil {
		apiFail(w, err)
		return
	}
	var mine []controlstate.Deployment
	for _, d := range ans.Deployments {
		if c.cluster || d.Tenant == c.token.Tenant {
			mine = append(mine, d)
		}
	}
	hosted, missing := a.gatherHosted(r.Context())
	out := []DeploymentInfo{}
	for _, d := range mine {
		info := deploymentInfo(d, c)
		info.Missing = missing
		for node, hs := range hosted {
			for _, h := range hs {
				if h.Key == d.Key && h.Version == d.Version && (h.Alive > 0 || h.Starting > 0) {
					info.Running += h.Alive
					info.Starting += h.Starting
					info.Nodes[node] += h.Alive
					info.Ongoing += h.Ongoing
				}
			}
		}
		info.Status = "UPDATING"
		if info.Running == d.Replicas {
			info.Status = "HEALTHY"
		}
		out = append(out, info)
	}
	writeJSON(w, out)
}

// gatherHosted asks every alive node what it hosts.
func (a *Agent) gatherHosted(ctx context.Context) (map[string][]hostedWire, []string) {
	ctx, cancel := context.WithTimeout(ctx, stateTimeout)
	defer cancel()
	answers, missing := a.askServeAll(ctx, serveCall{Status: true})
	out := map[string][]hostedWire{a.ID: a.hosted()}
	for id, ans := range answers {
		out[id] = ans.Hosted
	}
	return out, missing
}

// askServe sends node a msgServe and returns its answer.
func (a *Agent) askServe(ctx context.Context, node string, c serveCall) (serveAnswer, error) {
	var ans serveAnswer
	addr, err := a.addrOf(node)
	if err != nil {
		return ans, err
	}
	body, err := wire.Marshal(c)
	if err != nil {
		return ans, err
	}
	_, b, err := a.quic.Call(ctx, addr, msgServe, body)
	if err == nil {
		err = wire.Unmarshal(b, &ans)
	}
	return ans, err
}

// askServeAll sends every other alive member a msgServe at once and
// returns their answers by node, and the nodes that did not answer,
// sorted.
func (a *Agent) askServeAll(ctx context.Context, c serveCall) (map[string]serveAnswer, []string) {
	out := map[string]serveAnswer{}
	var missing []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range a.aliveMembers(false) {
		wg.Go(func() {
			ans, err := a.askServe(ctx, id, c)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				missing = append(missing, id)
				return
			}
			out[id] = ans
		})
	}
	wg.Wait()
	slices.Sort(missing)
	return out, missing
}

// nodeFor picks the node a request goes to: by the power of two
// choices over the nodes that host replicas, weighing each node's
// requests in flight from here by its replicas.
func (a *Agent) nodeFor(placed map[string]int) string {
	var nodes []string
	for n, k := range placed {
		if k > 0 {
			nodes = append(nodes, n)
		}
	}
	switch len(nodes) {
	case 0:
		return ""
	case 1:
		return nodes[0]
	}
	slices.Sort(nodes)
	i, j := randIntN(len(nodes)), randIntN(len(nodes)-1)
	if j >= i {
		j++
	}
	load := func(n string) float64 { return float64(a.inflight(n)+1) / float64(placed[n]) }
	if load(nodes[j]) < load(nodes[i]) {
		return nodes[j]
	}
	return nodes[i]
}
