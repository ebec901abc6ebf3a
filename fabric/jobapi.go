//go:build linux

package fabric

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/membership"
	"github.com/wasmfabric/fabric/internal/wire"
)

func millis(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	t := time.UnixMilli(ms).UTC()
	return &t
}

func jobInfo(j controlstate.Job) JobInfo {
	return JobInfo{ID: j.ID, Module: j.Digest, Args: j.Args, Node: j.Node, State: string(j.State), Submitted: time.UnixMilli(j.Submitted).UTC(),
		Started: millis(j.Started), Ended: millis(j.Ended), Error: j.Error, ExitCode: j.ExitCode, Attempt: j.Attempt,
		MaxRestarts: j.MaxRestarts, Restarts: j.Restarts, Tenant: j.Tenant, Owner: j.Owner}
}

// result is the job's result frame, once it has ended.
func (j JobInfo) result() JobResultView {
	r := JobResultView{Error: j.Error, ExitCode: j.ExitCode}
	if j.State != string(controlstate.Succeeded) && r.Error == "" {
		r.Error = "job " + j.State
	}
	return r
}

// apiFail answers a request with the status that err's kind calls for.
func apiFail(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNoJob), errors.Is(err, ErrNoModuleHere), errors.Is(err, ErrNoTenant), errors.Is(err, ErrNoToken), errors.Is(err, ErrNoNode), errors.Is(err, ErrNoKey), errors.Is(err, ErrNoDeployment):
		code = http.StatusNotFound
	case errors.Is(err, ErrJobExists), errors.Is(err, ErrTenantExists), errors.Is(err, ErrJobNotEnded), errors.Is(err, ErrModuleInUse), errors.Is(err, ErrStale),
		errors.Is(err, ErrTokenExists), errors.Is(err, ErrNodeExists), errors.Is(err, ErrKeyExists), errors.Is(err, ErrRouteTaken):
		code = http.StatusConflict
	case errors.Is(err, ErrBadRequest):
		code = http.StatusBadRequest
	case errors.Is(err, ErrForbidden), errors.Is(err, ErrRevoked), errors.Is(err, ErrJoinRefused), errors.Is(err, ErrUnsigned):
		code = http.StatusForbidden
	case errors.Is(err, ErrTooMany), errors.Is(err, ErrQuota):
		code = http.StatusTooManyRequests
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrClosed), errors.Is(err, ErrDraining):
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "5")
	}
	apiError(w, code, err.Error())
}

// submitJob records a job whose module this node holds and starts its
// driver here.
func (a *Agent) submitJob(ctx context.Context, digest string, sig []byte, args []string, name string, maxRestarts uint32, by caller) (*runningJob, controlstate.Job, error) {
	if name == "" {
		name = string(newJobID())
	}
	id := controlstate.JobKey(by.tenant(), name)
	if err := a.propose(ctx, controlstate.Command{AddModule: &controlstate.AddModule{Digest: digest, Size: a.node.moduleSize(digest), Node: a.ID, Time: nowMillis(), Tenant: by.tenant(), Signature: sig}}); err != nil {
		return nil, controlstate.Job{}, err
	}
	sub := controlstate.Submit{ID: id, Digest: digest, Args: args, Node: a.ID, Time: nowMillis(), MaxRestarts: maxRestarts}
	if !by.cluster {
		sub.Tenant, sub.Owner = by.token.Tenant, by.token.ID
	}
	if err := a.propose(ctx, controlstate.Command{Submit: &sub}); err != nil {
		return nil, controlstate.Job{}, err
	}
	if maxRestarts > 0 {
		// A job that may restart elsewhere needs its module elsewhere:
		// a second node copies it now, while this one is alive.
		a.copyModuleAway(ctx, digest)
	}
	j := controlstate.Job{ID: id, Digest: digest, Args: args, Node: a.ID, State: controlstate.Pending, Submitted: sub.Time, Attempt: 1, MaxRestarts: maxRestarts,
		Tenant: sub.Tenant, Owner: sub.Owner}
	a.wakeCollector()
	a.log.Info("job submitted", "job", id, "module", digest[:12], "max_restarts", maxRestarts)
	r, err := a.launch(j)
	return r, j, err
}

// jobQuery reads a submission's options from its query.
func jobQuery(r *http.Request) (id string, maxRestarts uint32, err error) {
	q := r.URL.Query()
	id = q.Get("id")
	if id != "" && !controlstate.ValidID(id) {
		return "", 0, fmt.Errorf("%w: job ID %q: 1 to 64 letters, digits, '-', '_' or '.'", ErrBadRequest, id)
	}
	if s := q.Get("max_restarts"); s != "" {
		n, perr := strconv.ParseUint(s, 10, 32)
		if perr != nil || n > controlstate.MaxRestarts {
			return "", 0, fmt.Errorf("%w: max_restarts %q: a whole number up to %d", ErrBadRequest, s, controlstate.MaxRestarts)
		}
		maxRestarts = uint32(n)
	}
	return id, maxRestarts, nil
}

func (a *Agent) handleJobList(w http.ResponseWriter, r *http.Request) {
	jobs, err := a.listJobs(r.Context())
	if err != nil {
		apiFail(w, err)
		return
	}
	c := callerOf(r)
	out := make([]JobInfo, 0, len(jobs))
	for _, j := range jobs {
		if c.sees(j) {
			out = append(out, c.jobInfo(j))
		}
	}
	writeJSON(w, out)
}

func (a *Agent) handleJobGet(w http.ResponseWriter, r *http.Request) {
	j, err := a.tenantJob(r, r.PathValue("id"), false)
	if err != nil {
		apiFail(w, err)
		return
	}
	writeJSON(w, callerOf(r).jobInfo(j))
}

func (a *Agent) handleJobStop(w http.ResponseWriter, r *http.Request) {
	j, err := a.tenantJob(r, r.PathValue("id"), true)
	if err == nil {
		j, err = a.StopJob(r.Context(), j.ID)
	}
	if err != nil {
		apiFail(w, err)
		return
	}
	writeJSON(w, callerOf(r).jobInfo(j))
}

func (a *Agent) handleJobDelete(w http.ResponseWriter, r *http.Request) {
	j, err := a.tenantJob(r, r.PathValue("id"), true)
	if err == nil {
		err = a.propose(r.Context(), controlstate.Command{Delete: &controlstate.Delete{ID: j.ID}})
	}
	if err != nil {
		apiFail(w, err)
		return
	}
	id := j.ID
	if j.Node == a.ID {
		a.removeJobLog(id)
	} else if addr, aerr := a.addrOf(j.Node); aerr == nil {
		// The node removes the log when asked to serve one of a job that
		// is gone; asking is enough.
		if c, err := a.quic.OpenStream(r.Context(), addr, msgJobLogs, mustMarshal(logRequest{ID: id, Remove: true})); err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(c, 1))
			_ = c.Close()
		}
	}
	writeJSON(w, callerOf(r).jobInfo(j))
}

// logRequest asks the node that ran a job's driver for its kept output.
type logRequest struct {
	ID     string `cbor:"1,keyasint"`
	Follow bool   `cbor:"2,keyasint,omitempty"`
	Remove bool   `cbor:"3,keyasint,omitempty"` // the job was deleted: remove its log
	// Token is the API caller's token, which the node checks: a log is
	// read for a caller who may see the job.
	Token string `cbor:"4,keyasint,omitempty"`
}

func mustMarshal(v any) []byte {
	b, err := wire.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// serveJobLog streams a job's kept output to the agent that asked.
func (a *Agent) serveJobLog(peer string, body []byte, c net.Conn) {
	defer c.Close()
	var req logRequest
	if a.peerMay(peer, msgJobLogs) != nil || wire.Unmarshal(body, &req) != nil || !controlstate.ValidJobKey(req.ID) {
		return
	}
	ctx, cancel := context.WithCancel(a.agentCtx)
	defer cancel()
	if req.Remove {
		if _, err := a.lookupJob(ctx, req.ID); errors.Is(err, ErrNoJob) {
			a.removeJobLog(req.ID) // only once the job is deleted
		}
		return
	}
	if !a.logReader(ctx, req) {
		return
	}
	go func() { // the asker gone, the stream ends
		_, _ = io.Copy(io.Discard, c)
		cancel()
	}()
	_ = a.copyLocalLog(ctx, req.ID, req.Follow, c)
}

// logReader reports whether a log request relays the token of a caller
// who may see the job.
func (a *Agent) logReader(ctx context.Context, req logRequest) bool {
	c, ok := a.relayedCaller(ctx, req.Token)
	if !ok {
		return false
	}
	j, err := a.lookupJob(ctx, req.ID)
	return err == nil && c.sees(j)
}

// copyLocalLog writes the frames of a job's log kept on this node.
func (a *Agent) copyLocalLog(ctx context.Context, id string, follow bool, w io.Writer) error {
	a.jobsMu.Lock()
	var live *jobLog
	if r := a.running[id]; r != nil {
		live = r.log
	}
	a.jobsMu.Unlock()
	return copyJobLog(ctx, jobLogPath(a.jobsDir(), id), live, follow, w)
}

// copyJobOutput writes the frames of a job's kept output wherever its
// driver's node keeps it.
func (a *Agent) copyJobOutput(ctx context.Context, j controlstate.Job, follow bool, w io.Writer) error {
	if j.Node == a.ID {
		return a.copyLocalLog(ctx, j.ID, follow, w)
	}
	addr, err := a.addrOf(j.Node)
	if err != nil {
		return fmt.Errorf("fabric: the job's output is kept on node %s, which is not reachable: %w", j.Node, err)
	}
	c, err := a.quic.OpenStream(ctx, addr, msgJobLogs, mustMarshal(logRequest{ID: j.ID, Follow: follow, Token: callerToken(ctx)}))
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	_, err = copyFrames(w, c)
	return err
}

// handleJobLogs streams a job's kept output, following it with
// follow=1, then its result once it has ended (MediaJobStream, or plain
// text with the result in the trailers).
func (a *Agent) handleJobLogs(w http.ResponseWriter, r *http.Request) {
	j, err := a.tenantJob(r, r.PathValue("id"), false)
	if err != nil {
		apiFail(w, err)
		return
	}
	follow := r.URL.Query().Get("follow") == "1" || r.URL.Query().Get("follow") == "true"
	// Bounded: each log read holds a file or, for another node's job, a
	// stream on this agent's connection to that node, which also carries
	// its peer messages.
	release, ok := acquire(a.logReads)
	if !ok {
		apiFail(w, fmt.Errorf("%w: %d job logs are being read through this agent; try again later", ErrTooMany, cap(a.logReads)))
		return
	}
	defer release()
	if j.Node != a.ID {
		release, ok := acquire(a.remoteLogReads)
		if !ok {
			apiFail(w, fmt.Errorf("%w: %d logs of jobs on other nodes are being read through this agent; try again later, or ask the agent of node %s", ErrTooMany, cap(a.remoteLogReads), j.Node))
			return
		}
		defer release()
	}
	out, finish := startJobStream(w, r)
	w.Header().Set("Fabric-Job-Id", callerOf(r).jobID(j.ID))
	cerr := a.copyJobOutput(r.Context(), j, follow && !j.State.Ended(), out)
	if cerr != nil && r.Context().Err() == nil {
		writeNotice(out, fmt.Sprintf("fabric: the job's output stream broke: %v\n", cerr))
	}
	if follow && !j.State.Ended() {
		// The log ended with the driver; its end is recorded just before.
		deadline := time.Now().Add(controlTimeout)
		for {
			j, err = a.lookupJob(r.Context(), j.ID)
			if err != nil || j.State.Ended() || time.Now().After(deadline) || r.Context().Err() != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err == nil && j.State.Ended() {
		res := jobInfo(j).result()
		finish(&res)
	} else {
		finish(nil)
	}
}

// copyModuleAway has one other alive node, a server first, copy a module
// from this one and record it holds it; it logs a failure (the job then
// restarts only where the module happens to be).
func (a *Agent) copyModuleAway(ctx context.Context, digest string) {
	targets := a.servers()
	a.tableMu.RLock()
	for id, m := range a.table {
		if m.Role != "server" && m.Status == membership.Alive && id != a.ID {
			targets = append(targets, id)
		}
	}
	a.tableMu.RUnlock()
	var err error = errors.New("no other alive node")
	for _, t := range targets {
		addr, aerr := a.addrOf(t)
		if aerr != nil {
			continue
		}
		a.moduleAllows.allow(t, digest, time.Now().Add(moduleAllowTTL))
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		_, _, err = a.quic.Call(cctx, addr, msgModuleCopy, []byte(digest))
		cancel()
		if err == nil {
			return
		}
	}
	a.warnf("module %.12s of a job with restarts is on this node only: %v", digest, err)
}

// Bounds on the job logs an agent serves at once.
const (
	maxLogReads       = 256
	maxRemoteLogReads = 32
)

// acquire takes a slot of sem without waiting.
func acquire(sem chan struct{}) (release func(), ok bool) {
	select {
	case sem <- struct{}{}:
		return func() { <-sem }, true
	default:
		return nil, false
	}
}
