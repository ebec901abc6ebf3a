//go:build linux

package fabric

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/membership"
)

// runningJob is a job whose driver runs on this agent.
type runningJob struct {
	attempt uint32
	cancel  context.CancelCauseFunc
	log     *jobLog
	done    chan struct{}
	result  JobResultView // set before done closes
}

// errStopped is the cause of a job's cancellation by `fabric job stop`.
var errStopped = errors.New("fabric: the job was stopped")

func (a *Agent) jobsDir() string { return filepath.Join(a.cfg.DataDir, "jobs") }

// launch starts the driver of a job's attempt on this agent, unless it
// runs here already, and returns its handle.
func (a *Agent) launch(j controlstate.Job) (*runningJob, error) {
	a.jobsMu.Lock()
	defer a.jobsMu.Unlock()
	if r := a.running[j.ID]; r != nil && r.attempt >= j.Attempt {
		return r, nil
	}
	if a.stopping.Load() {
		return nil, ErrClosed
	}
	l, err := openJobLog(a.jobsDir(), j.ID, cmp.Or(a.cfg.JobLogLimit, DefaultJobLogLimit))
	if err != nil {
		return nil, fmt.Errorf("fabric: the job's log: %w", err)
	}
	if j.Attempt > 1 && len(j.Restarts) > 0 {
		fmt.Fprintf(l.Stderr(), "fabric: attempt %d of job %s on node %s, after: %s\n", j.Attempt, controlstate.JobName(j.ID), a.ID, j.Restarts[len(j.Restarts)-1])
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	r := &runningJob{attempt: j.Attempt, cancel: cancel, log: l, done: make(chan struct{})}
	a.running[j.ID] = r
	a.wg.Add(1)
	go a.runAttempt(ctx, j, r)
	return r, nil
}

// runAttempt runs a job's driver and records how it ended.
func (a *Agent) runAttempt(ctx context.Context, j controlstate.Job, r *runningJob) {
	defer a.wg.Done()
	defer close(r.done)
	defer r.cancel(nil)
	stop := context.AfterFunc(a.agentCtx, func() { r.cancel(errors.New("fabric: the agent stopped")) })
	defer stop()
	// A slot first: past MaxRunningJobs, jobs wait here, pending, in the
	// order they came, so that a flood of submissions cannot start a
	// process each at once.
	select {
	case a.driverSlots <- struct{}{}:
		defer func() { <-a.driverSlots }()
	case <-ctx.Done():
		r.result = JobResultView{Error: context.Cause(ctx).Error()}
		a.forget(j.ID, r)
		return
	}
	// The job's grant first: it names the module, and shows a holder of
	// the module that this node may copy it.
	id := newJobID()
	grant := a.grantFor(ctx, string(id), j.Tenant, a.ID, j.ID, j.Digest)
	err := a.node.pullModuleFrom(ctx, j.Digest, a.moduleHolders(ctx, j.Digest), encodeModuleProof(string(id), j.Tenant, a.ID, j.Digest, grant))
	a.node.touchModule(j.Digest)
	if err == nil {
		err = a.propose(ctx, controlstate.Command{Start: &controlstate.Start{ID: j.ID, Attempt: j.Attempt, Time: nowMillis(), Run: string(id)}})
		if errors.Is(err, ErrStale) { // stopped before it started, or moved on
			r.result = JobResultView{Error: "fabric: the job was stopped or moved before it started"}
			a.forget(j.ID, r)
			return
		}
	}
	started := time.Now()
	if err == nil {
		a.log.Info("job started", "job", j.ID, "attempt", j.Attempt, "module", j.Digest[:12], "args", len(j.Args))
		err = a.node.runJob(ctx, j.Digest, j.Args, JobOptions{Stdout: r.log.Stdout(), Stderr: r.log.Stderr(), Tenant: j.Tenant, controlJob: j.ID, id: id, grant: grant})
	}
	end := controlstate.End{ID: j.ID, Attempt: j.Attempt, State: controlstate.Succeeded, Time: nowMillis()}
	if err != nil {
		end.State, end.Error = controlstate.Failed, err.Error()
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
			end.Error = c.Error()
		}
		if je := (*JobError)(nil); errors.As(err, &je) {
			end.ExitCode = je.ExitCode
		}
	}
	r.result = JobResultView{Error: end.Error, ExitCode: end.ExitCode}
	logEnd := a.log.Info
	if end.State != controlstate.Succeeded {
		logEnd = a.log.Warn
	}
	logEnd("job "+string(end.State), "job", j.ID, "attempt", j.Attempt, "took", time.Since(started).Round(time.Millisecond), "error", firstLine(end.Error), "exit_code", end.ExitCode)
	if errors.Is(context.Cause(ctx), errStopped) {
		r.result.Error = "fabric: the job was stopped"
		a.forget(j.ID, r)
		return
	}
	// The end must be recorded: tried until it is, or until it no longer
	// applies, or the agent stops (a restarted agent then fails the
	// attempt it lost).
	wait := 100 * time.Millisecond
	for {
		err := a.propose(a.agentCtx, controlstate.Command{End: &end})
		if err == nil || errors.Is(err, ErrStale) || errors.Is(err, ErrNoJob) || a.stopping.Load() {
			break
		}
		a.warnf("fabric agent: recording the end of job %s: %v; retrying", j.ID, err)
		select {
		case <-a.done:
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
	a.forget(j.ID, r)
}

// forget closes a job's log and drops its handle.
func (a *Agent) forget(id string, r *runningJob) {
	r.log.close()
	a.jobsMu.Lock()
	if a.running[id] == r {
		delete(a.running, id)
	}
	a.jobsMu.Unlock()
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}

// moduleHolders returns the nodes the control state says hold a module.
func (a *Agent) moduleHolders(ctx context.Context, digest string) []string {
	if a.node.HasModule(digest) {
		return nil
	}
	ans, err := a.control(ctx, controlRequest{Op: "module", ID: digest})
	if err != nil || len(ans.Modules) != 1 {
		return nil
	}
	return ans.Modules[0].Nodes
}

// stopLocal cancels a job's driver here; it reports whether one ran.
func (a *Agent) stopLocal(id string) bool {
	a.jobsMu.Lock()
	r := a.running[id]
	a.jobsMu.Unlock()
	if r == nil {
		return false
	}
	r.cancel(errStopped)
	return true
}

// StopJob stops a job: it is recorded as stopped, and its driver's node
// cancels it.
func (a *Agent) StopJob(ctx context.Context, id string) (controlstate.Job, error) {
	err := a.propose(ctx, controlstate.Command{Stop: &controlstate.Stop{ID: id, Reason: "stopped by request (fabric job stop)", Time: nowMillis()}})
	if err != nil && !errors.Is(err, ErrStale) {
		return controlstate.Job{}, err
	}
	j, err := a.lookupJob(ctx, id)
	if err != nil {
		return j, err
	}
	if j.Node == a.ID {
		a.stopLocal(id)
	} else if addr, err := a.addrOf(j.Node); err == nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, _, err = a.quic.Call(cctx, addr, msgJobStop, []byte(id))
		cancel()
		if err != nil {
			a.warnf("fabric agent: telling %s to stop job %s: %v", j.Node, id, err)
		}
	}
	return j, nil
}

// reconcileOwnJobs settles, once after a start, the jobs the control
// state says run on this agent: an attempt that was running was lost
// with the agent's last run, and one pending here starts.
func (a *Agent) reconcileOwnJobs() {
	defer a.wg.Done()
	for {
		jobs, err := a.listJobs(a.agentCtx)
		if err == nil {
			for _, j := range jobs {
				if j.Node != a.ID || j.State.Ended() {
					continue
				}
				a.jobsMu.Lock()
				_, here := a.running[j.ID]
				a.jobsMu.Unlock()
				if here {
					continue
				}
				j, err := a.lookupJob(a.agentCtx, j.ID) // whole: its arguments and restarts
				switch {
				case err != nil || j.Node != a.ID || j.State.Ended():
				case j.State == controlstate.Running:
					a.loseAttempt(j, fmt.Sprintf("the agent on node %s restarted while the job's driver ran there", a.ID))
				default:
					_, _ = a.launch(j)
				}
			}
			return
		}
		select {
		case <-a.done:
			return
		case <-time.After(time.Second):
		}
	}
}

// loseAttempt records that a job's attempt was lost: the job restarts if
// it has restarts left (on an alive node that holds its module, this
// agent's own preferred), else fails with the cause.
func (a *Agent) loseAttempt(j controlstate.Job, cause string) {
	ctx := a.agentCtx
	if uint32(len(j.Restarts)) < j.MaxRestarts {
		if target := a.restartTarget(ctx, j); target != "" {
			err := a.propose(ctx, controlstate.Command{Restart: &controlstate.Restart{ID: j.ID, Attempt: j.Attempt, Node: target, Cause: cause, Time: nowMillis()}})
			if err == nil {
				a.logf("fabric agent: job %s restarts on %s: %s", j.ID, target, cause)
				a.tellRun(j.ID, target)
				return
			}
		}
	}
	err := a.propose(ctx, controlstate.Command{End: &controlstate.End{ID: j.ID, Attempt: j.Attempt, State: controlstate.Failed, Error: "fabric: " + cause, Time: nowMillis()}})
	if err == nil {
		a.warnf("fabric agent: job %s failed: %s", j.ID, cause)
	}
}

// restartTarget picks the node a lost job restarts on: this agent when it
// holds the module (it is alive: the leader, or the agent that lost the
// attempt in its last run), else another alive node that holds it.
func (a *Agent) restartTarget(ctx context.Context, j controlstate.Job) string {
	if a.node.HasModule(j.Digest) {
		return a.ID
	}
	ans, err := a.control(ctx, controlRequest{Op: "module", ID: j.Digest})
	if err != nil || len(ans.Modules) != 1 {
		return ""
	}
	for _, h := range ans.Modules[0].Nodes {
		if m, ok := a.member(h); ok && h != j.Node && m.Status == membership.Alive {
			return h
		}
	}
	return ""
}

// tellRun asks a node to start a job's pending attempt.
func (a *Agent) tellRun(id, node string) {
	if node == a.ID {
		if j, err := a.lookupJob(a.agentCtx, id); err == nil && j.Node == a.ID && j.State == controlstate.Pending {
			_, _ = a.launch(j)
		}
		return
	}
	addr, err := a.addrOf(node)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(a.agentCtx, 10*time.Second)
	defer cancel()
	if _, _, err := a.quic.Call(ctx, addr, msgJobRun, []byte(id)); err != nil {
		a.warnf("fabric agent: telling %s to run job %s: %v", node, id, err)
	}
}

// pendingGrace is how long a pending attempt may wait to start on an
// alive node before the leader tells that node again.
const pendingGrace = 10 * time.Second

// leadLoop keeps, while this server leads, the raft configuration in step
// with the servers gossip knows, and settles the jobs whose driver's node
// is gone.
func (a *Agent) leadLoop() {
	defer a.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	told := map[string]time.Time{} // pending jobs told to run, by ID
	for {
		select {
		case <-a.done:
			return
		case <-t.C:
		case <-a.reconcile:
		}
		if !a.ctl.IsLeader() {
			continue
		}
		a.reconcileServers()
		a.forgetLostNames()
		jobs, err := a.listJobs(a.agentCtx)
		if err != nil {
			continue
		}
		for _, j := range jobs {
			if j.State.Ended() || j.Node == a.ID {
				continue
			}
			m, ok := a.member(j.Node)
			switch {
			case !ok:
				// Gossip has not told of the node yet (this leader is new).
			case m.Status == membership.Dead || m.Status == membership.Left:
				verb := map[membership.Status]string{membership.Dead: "failed", membership.Left: "left the cluster"}[m.Status]
				if whole, err := a.lookupJob(a.agentCtx, j.ID); err == nil && whole.Attempt == j.Attempt && !whole.State.Ended() {
					a.loseAttempt(whole, fmt.Sprintf("node %s, which ran the job's driver, %s", j.Node, verb))
				}
			case j.State == controlstate.Pending && m.Status == membership.Alive && time.Since(time.UnixMilli(j.Submitted)) > pendingGrace &&
				time.Since(told[j.ID]) > pendingGrace:
				told[j.ID] = time.Now()
				go a.tellRun(j.ID, j.Node)
			}
		}
		for id := range told {
			if !slices.ContainsFunc(jobs, func(j controlstate.Job) bool { return j.ID == id && j.State == controlstate.Pending }) {
				delete(told, id)
			}
		}
	}
}

// reconcileServers adds the alive servers gossip knows to the raft
// configuration, and removes those that left.
func (a *Agent) reconcileServers() {
	voters, err := a.ctl.Voters()
	if err != nil {
		return
	}
	a.tableMu.RLock()
	members := make([]membership.Member, 0, len(a.table))
	for _, m := range a.table {
		members = append(members, m)
	}
	a.tableMu.RUnlock()
	for _, m := range members {
		if m.Role != "server" || m.ID == a.ID {
			continue
		}
		in := slices.Contains(voters, m.ID)
		switch {
		case !in && m.Status == membership.Alive && !a.isServerPeer(m.ID):
			// Gossip's role is the member's word; a server's certificate
			// is the CA's. Reaching it shows its certificate.
			if addr, err := a.addrOf(m.ID); err == nil {
				ctx, cancel := context.WithTimeout(a.agentCtx, 5*time.Second)
				_, _, _ = a.quic.Call(ctx, addr, msgPing, nil)
				cancel()
			}
			if _, told := a.fakeServers.LoadOrStore(m.ID, true); !a.isServerPeer(m.ID) && !told {
				a.warnf("fabric agent: node %s says it is a server, but its certificate does not: not adding it to the control plane", m.ID)
			}
		case !in && m.Status == membership.Alive:
			if err := a.ctl.AddVoter(m.ID); err != nil {
				a.warnf("fabric agent: adding server %s to the control plane: %v", m.ID, err)
			} else {
				a.logf("fabric agent: server %s joined the control plane", m.ID)
			}
		case in && m.Status == membership.Left:
			if err := a.ctl.RemoveServer(m.ID); err == nil {
				a.logf("fabric agent: server %s left the control plane", m.ID)
			}
		}
	}
}

// removeJobLog removes a deleted job's kept output.
func (a *Agent) removeJobLog(id string) {
	if controlstate.ValidJobKey(id) {
		_ = os.Remove(jobLogPath(a.jobsDir(), id))
	}
}

// Drain prepares the agent to stop: it takes no new jobs or calls, tells
// the cluster it offers no resources (so that no new tasks are placed on
// it), and waits until the jobs whose drivers run here and the tasks
// running here have ended, or ctx ends. Leave follows; jobs still running
// then fail, or restart elsewhere when they asked for restarts.
func (a *Agent) Drain(ctx context.Context) error {
	if !a.draining.CompareAndSwap(false, true) {
		return nil
	}
	a.log.Info("draining: no new work; waiting for the jobs and tasks here to end")
	a.stopUsage()
	info := a.info
	info.Resources = map[string]float64{}
	if err := a.members.Update(info); err != nil {
		a.warnf("draining: telling the cluster: %v", err)
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		a.jobsMu.Lock()
		jobs := len(a.running)
		a.jobsMu.Unlock()
		tasks := a.node.Stats().Tasks
		if jobs == 0 && tasks == 0 {
			a.log.Info("drained")
			return nil
		}
		select {
		case <-ctx.Done():
			a.warnf("draining: %d jobs and %d tasks had not ended when the drain's time ran out", jobs, tasks)
			return ctx.Err()
		case <-t.C:
		}
	}
}
