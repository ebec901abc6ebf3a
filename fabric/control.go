//go:build linux

package fabric

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wasmfabric/fabric/internal/control"
	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/membership"
	"github.com/wasmfabric/fabric/internal/transport"
	"github.com/wasmfabric/fabric/internal/wire"
)

// Messages of the control plane between agents.
const (
	msgRaft    transport.Type = 20 // stream: a raft connection between servers
	msgControl transport.Type = 21 // body: controlRequest; answer: msgControl, a controlAnswer
	msgJobLogs transport.Type = 22 // stream: body a logRequest; then the log's frames
	msgJobStop transport.Type = 23 // body: a job ID; answer: msgAck
	msgJobRun  transport.Type = 24 // body: a job ID; answer: msgAck
	// msgModuleCopy asks a node to copy a module from the sender and
	// record that it holds it: body the digest; answer msgAck once done.
	msgModuleCopy transport.Type = 25
)

// controlRequest asks a server to propose a command or read the state.
type controlRequest struct {
	Op        string `cbor:"1,keyasint"` // "apply", "jobs", "job", "modules", "module", "name", "tenants", "tokens", "authenticate", "node", "nodes", "revoked", "join-tokens", "grant", "usage"
	Command   []byte `cbor:"2,keyasint,omitempty"`
	ID        string `cbor:"3,keyasint,omitempty"`
	Forwarded bool   `cbor:"4,keyasint,omitempty"` // by a follower to its leader
	Namespace string `cbor:"5,keyasint,omitempty"` // "name": the name's namespace and name (ID: the job)
	Name      string `cbor:"6,keyasint,omitempty"`
	Group     bool   `cbor:"7,keyasint,omitempty"` // "name": a placement group's
	Tenant    string `cbor:"8,keyasint,omitempty"` // "name": the namespace's tenant
	// Token is the API caller's token that the member relays: the leader
	// allows what it allows too.
	Token string `cbor:"9,keyasint,omitempty"`
	// Origin is the member a forwarding server took the request from.
	Origin string `cbor:"10,keyasint,omitempty"`
	// Module is "grant"'s module digest.
	Module string `cbor:"11,keyasint,omitempty"`
	// Proof is a job's grant (an encoded moduleProof) that the member
	// shows for a change about the job: naming an actor of it.
	Proof []byte `cbor:"12,keyasint,omitempty"`
}

// controlAnswer is a server's answer: Code names the error's kind.
type controlAnswer struct {
	Code    string                    `cbor:"1,keyasint,omitempty"`
	Error   string                    `cbor:"2,keyasint,omitempty"`
	Leader  string                    `cbor:"3,keyasint,omitempty"`
	Jobs    []controlstate.Job        `cbor:"4,keyasint,omitempty"`
	Modules []controlstate.Module     `cbor:"5,keyasint,omitempty"`
	Names   []controlstate.ActorName  `cbor:"6,keyasint,omitempty"`
	Tenants []controlstate.Tenant     `cbor:"7,keyasint,omitempty"`
	Tokens  []controlstate.Token      `cbor:"8,keyasint,omitempty"`
	Joins   []controlstate.JoinToken  `cbor:"9,keyasint,omitempty"`
	Nodes   []controlstate.NodeRecord `cbor:"10,keyasint,omitempty"`
	Revoked []string                  `cbor:"11,keyasint,omitempty"`
	Secret  string                    `cbor:"12,keyasint,omitempty"` // a join token made now
	Grant   []byte                    `cbor:"13,keyasint,omitempty"` // a job's grant

	Deployments []controlstate.Deployment `cbor:"14,keyasint,omitempty"`
}

var errCodes = []struct {
	code     string
	internal error
	public   error
}{
	{"no_job", controlstate.ErrNoJob, ErrNoJob},
	{"no_deployment", controlstate.ErrNoDeployment, ErrNoDeployment},
	{"route_taken", controlstate.ErrRouteTaken, ErrRouteTaken},
	{"exists", controlstate.ErrJobExists, ErrJobExists},
	{"running", controlstate.ErrJobRunning, ErrJobNotEnded},
	{"too_many", controlstate.ErrTooManyJobs, ErrTooMany},
	{"too_many_modules", controlstate.ErrTooManyModule, ErrTooMany},
	{"bad", controlstate.ErrBadCommand, ErrBadRequest},
	{"no_module", controlstate.ErrNoModule, ErrNoModuleHere},
	{"module_in_use", controlstate.ErrModuleInUse, ErrModuleInUse},
	{"stale", controlstate.ErrStale, ErrStale},
	{"name_taken", controlstate.ErrNameTaken, errNameTaken},
	{"too_many_names", controlstate.ErrTooManyNames, ErrTooMany},
	{"no_tenant", controlstate.ErrNoTenant, ErrNoTenant},
	{"tenant_exists", controlstate.ErrTenantExists, ErrTenantExists},
	{"too_many_tenants", controlstate.ErrTooManyTenants, ErrTooMany},
	{"no_token", controlstate.ErrNoToken, ErrNoToken},
	{"too_many_tokens", controlstate.ErrTooManyTokens, ErrTooMany},
	{"quota", controlstate.ErrQuota, ErrQuota},
	{"token_unknown", controlstate.ErrTokenUnknown, ErrUnauthorized},
	{"token_expired", controlstate.ErrTokenExpired, ErrUnauthorized},
	{"token_revoked", controlstate.ErrTokenRevoked, ErrUnauthorized},
	{"token_exists", controlstate.ErrTokenExists, ErrTokenExists},
	{"no_join_token", controlstate.ErrNoJoinToken, ErrJoinRefused},
	{"join_token_used", controlstate.ErrJoinTokenUsed, ErrJoinRefused},
	{"join_token_expired", controlstate.ErrJoinTokenExpired, ErrJoinRefused},
	{"node_exists", controlstate.ErrNodeExists, ErrNodeExists},
	{"no_node", controlstate.ErrNoNode, ErrNoNode},
	{"node_revoked", controlstate.ErrNodeRevoked, ErrRevoked},
	{"too_many_nodes", controlstate.ErrTooManyNodes, ErrTooMany},
	{"not_allowed", errNotAllowed, ErrForbidden},
	{"unsigned", controlstate.ErrUnsigned, ErrUnsigned},
	{"no_key", controlstate.ErrNoKey, ErrNoKey},
	{"key_exists", controlstate.ErrKeyExists, ErrKeyExists},
	{"too_many_keys", controlstate.ErrTooManyKey, ErrTooMany},
}

func answerErr(err error) controlAnswer {
	var nl *control.NotLeaderError
	if errors.As(err, &nl) {
		return controlAnswer{Code: "not_leader", Error: err.Error(), Leader: nl.Leader}
	}
	for _, c := range errCodes {
		if errors.Is(err, c.internal) {
			return controlAnswer{Code: c.code, Error: err.Error()}
		}
	}
	return controlAnswer{Code: "internal", Error: err.Error()}
}

func (ans controlAnswer) err() error {
	if ans.Code == "" {
		return nil
	}
	msg := strings.TrimPrefix(ans.Error, "controlstate: ")
	for _, c := range errCodes {
		if ans.Code == c.code {
			return fmt.Errorf("%w (%s)", c.public, msg)
		}
	}
	return fmt.Errorf("fabric: control plane: %s", msg)
}

// controlTimeout bounds one proposal or read on the leader.
const controlTimeout = 10 * time.Second

// controlHold is how long a request waits for a leader (an election, a
// server restarting) before it fails with ErrNoLeader.
const controlHold = 30 * time.Second

// startControl starts the control-plane server of a server agent.
func (a *Agent) startControl(bootstrap bool) error {
	s, err := control.Start(control.Config{
		NodeID: a.ID, Dir: filepath.Join(a.cfg.DataDir, "raft"), Bootstrap: bootstrap, Addr: a.ID,
		Resolve: func(id string) (string, error) { return a.addrOf(id) },
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			return a.quic.OpenStream(ctx, addr, msgRaft, nil)
		},
		Log: a.cfg.Log, Fast: a.fastTiming(),
	})
	if err != nil {
		return err
	}
	a.ctl = s
	return nil
}

// acceptRaft takes a raft stream from another server.
func (a *Agent) acceptRaft(peer string, _ []byte, c net.Conn) {
	select {
	case <-a.ready:
	case <-a.done:
		_ = c.Close()
		return
	}
	if a.ctl == nil || a.peerMay(peer, msgRaft) != nil {
		_ = c.Close()
		return
	}
	a.ctl.Accept(c)
}

// serveControl answers a control request on this server: on the leader
// itself, on a follower by forwarding it once to the leader. origin is
// the member that sent it (a server forwarding a request names the
// member it came from). The leader checks what the request may read and
// change (controlauth.go).
func (a *Agent) serveControl(ctx context.Context, origin string, req controlRequest) controlAnswer {
	if a.ctl == nil {
		return controlAnswer{Code: "not_server", Error: "fabric: " + a.ID + " is not a server of the control plane"}
	}
	if req.Forwarded && a.isServerPeer(origin) && req.Origin != "" {
		origin = req.Origin
	}
	if !a.ctl.IsLeader() {
		leader := a.ctl.Leader()
		if req.Forwarded || leader == "" || leader == a.ID {
			return controlAnswer{Code: "not_leader", Error: "fabric: no leader elected yet", Leader: leader}
		}
		req.Forwarded, req.Origin = true, origin
		ans, err := a.callControl(ctx, leader, req)
		if err != nil {
			return controlAnswer{Code: "not_leader", Error: err.Error()}
		}
		return ans
	}
	var ans controlAnswer
	var p controlPrincipal
	var allowed error
	proved := a.provedJob(req) // a signature check: not under the state's lock
	err := a.ctl.Read(controlTimeout, func(s *controlstate.State) {
		p = a.principal(s, origin, req)
		p.job = proved
		if req.Op == "apply" || req.Op == "create-join-token" || req.Op == "rotate-gossip-key" {
			return
		}
		if req.Op == "grant" {
			ans, allowed = a.grantAnswer(s, p, req)
			return
		}
		if req.Op == "usage" {
			ans, allowed = a.usageAnswer(s, origin, req)
			return
		}
		if !p.mayRead(req.Op, req.ID) {
			allowed = fmt.Errorf("%w: node %s may not read %q from the control state", errNotAllowed, origin, req.Op)
			return
		}
		allowed = a.readControl(s, p, req, &ans)
	})
	if err == nil && req.Op == "create-join-token" {
		return a.createJoinTokenFor(ctx, p, req)
	}
	if err == nil && req.Op == "rotate-gossip-key" {
		return a.rotateFor(ctx, p)
	}
	if err = cmp.Or(err, allowed); err == nil && req.Op == "apply" {
		var c controlstate.Command
		if c, err = controlstate.DecodeCommand(req.Command); err == nil {
			if err = a.ctl.Read(controlTimeout, func(s *controlstate.State) { allowed = p.mayApply(s, c) }); err == nil && allowed == nil {
				err = a.ctl.Apply(c, controlTimeout)
			}
			err = cmp.Or(err, allowed)
		}
	}
	if err != nil {
		if errors.Is(err, errNotAllowed) {
			a.warnf("fabric agent: refused a control request of node %s: %v", origin, err)
		}
		return answerErr(err)
	}
	return ans
}

// readControl answers a read of the control state for p.
func (a *Agent) readControl(s *controlstate.State, p controlPrincipal, req controlRequest, ans *controlAnswer) error {
	switch req.Op {
	case "jobs":
		for _, j := range listed(s.Jobs(nil)) {
			if p.seesJob(j) {
				ans.Jobs = append(ans.Jobs, j)
			}
		}
	case "job":
		if j, ok := s.Job(req.ID); ok && p.seesJob(j) {
			ans.Jobs = []controlstate.Job{j}
		} else {
			return fmt.Errorf("%w: %q", controlstate.ErrNoJob, req.ID)
		}
	case "modules":
		ans.Modules = s.Modules()
	case "module":
		m, ok := s.Module(req.ID)
		if !ok {
			return fmt.Errorf("%w: %q", controlstate.ErrNoModule, req.ID)
		}
		ans.Modules = []controlstate.Module{m}
	case "authenticate":
		t, err := s.Authenticate(req.Command, nowMillis())
		if err != nil {
			return err
		}
		ans.Tokens = []controlstate.Token{t}
	case "tenants":
		ans.Tenants = s.Tenants()
	case "tokens":
		ans.Tokens = s.Tokens(req.ID)
		for i := range ans.Tokens {
			ans.Tokens[i].Hash = nil
		}
	case "node":
		if n, ok := s.NodeRecord(req.ID); ok {
			ans.Nodes = []controlstate.NodeRecord{n}
		}
	case "nodes":
		ans.Nodes = s.NodeRecords()
	case "revoked":
		ans.Revoked = s.Revoked()
	case "join-tokens":
		ans.Joins = s.JoinTokens()
	case "deployments":
		ans.Deployments = s.Deployments()
	case "name":
		if n, ok := s.Name(req.Group, req.Tenant, req.Namespace, req.ID, req.Name); ok {
			ans.Names = []controlstate.ActorName{n}
		}
	default:
		return fmt.Errorf("%w: control operation %q", controlstate.ErrBadCommand, req.Op)
	}
	return nil
}

// callControl sends a control request to another agent.
func (a *Agent) callControl(ctx context.Context, node string, req controlRequest) (controlAnswer, error) {
	addr, err := a.addrOf(node)
	if err != nil {
		return controlAnswer{}, err
	}
	body, err := wire.Marshal(req)
	if err != nil {
		return controlAnswer{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, controlTimeout+5*time.Second)
	defer cancel()
	_, b, err := a.quic.Call(cctx, addr, msgControl, body)
	if err != nil {
		return controlAnswer{}, err
	}
	var ans controlAnswer
	if err := wire.Unmarshal(b, &ans); err != nil {
		return controlAnswer{}, fmt.Errorf("fabric: a malformed control answer from %s: %w", node, err)
	}
	return ans, nil
}

// servers returns the alive servers, the last known leader first.
func (a *Agent) servers() []string {
	var out []string
	a.tableMu.RLock()
	for id, m := range a.table {
		if m.Role == "server" && (m.Status == membership.Alive || m.Status == membership.Suspect) && id != a.ID {
			out = append(out, id)
		}
	}
	a.tableMu.RUnlock()
	slices.Sort(out)
	if h, _ := a.leaderHint.Load().(string); h != "" {
		if i := slices.Index(out, h); i > 0 {
			out[0], out[i] = out[i], out[0]
		}
	}
	return out
}

// control runs a control request wherever a server can answer it: this
// agent when it is a server, else the servers gossip names, waiting for
// a leader (controlHold at most).
func (a *Agent) control(ctx context.Context, req controlRequest) (controlAnswer, error) {
	if req.Token == "" {
		req.Token = callerToken(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, controlHold)
	defer cancel()
	wait := 50 * time.Millisecond
	last := errors.New("no server of the control plane is known (gossip names none): add servers with join tokens made by fabric join-token create --server (for a cluster made before the control plane, start its first agent once with --bootstrap)")
	for {
		var targets []string
		if a.ctl != nil {
			targets = []string{a.ID}
		} else {
			targets = a.servers()
		}
		for _, t := range targets {
			var ans controlAnswer
			var err error
			if t == a.ID {
				ans = a.serveControl(ctx, a.ID, req)
			} else {
				ans, err = a.callControl(ctx, t, req)
			}
			switch {
			case err != nil:
				last = err
			case ans.Code == "not_leader" || ans.Code == "not_server":
				last = errors.New(ans.Error)
				if ans.Leader != "" {
					a.leaderHint.Store(ans.Leader)
				}
			default:
				return ans, ans.err()
			}
		}
		select {
		case <-ctx.Done():
			return controlAnswer{}, fmt.Errorf("%w within %s: %v", ErrNoLeader, controlHold, last)
		case <-a.done:
			return controlAnswer{}, ErrClosed
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// propose applies a command through the control plane. The command is
// named, so that its retries (a leader lost after it committed it) apply
// it once.
func (a *Agent) propose(ctx context.Context, c controlstate.Command) error {
	return a.proposeProved(ctx, c, nil)
}

// proposeProved is propose with a job's grant to show (proof: an encoded
// moduleProof).
func (a *Agent) proposeProved(ctx context.Context, c controlstate.Command, proof []byte) error {
	c.Request = string(newJobID()) + string(newJobID())
	b, err := controlstate.EncodeCommand(c)
	if err != nil {
		return err
	}
	_, err = a.control(ctx, controlRequest{Op: "apply", Command: b, Proof: proof})
	return err
}

// lookupJob returns a job's record.
func (a *Agent) lookupJob(ctx context.Context, id string) (controlstate.Job, error) {
	ans, err := a.control(ctx, controlRequest{Op: "job", ID: id})
	if err != nil {
		return controlstate.Job{}, err
	}
	if len(ans.Jobs) != 1 {
		return controlstate.Job{}, fmt.Errorf("%w: %q", ErrNoJob, id)
	}
	return ans.Jobs[0], nil
}

// listJobs returns every job's record as a listing has it (listed):
// lookupJob has one whole.
func (a *Agent) listJobs(ctx context.Context) ([]controlstate.Job, error) {
	ans, err := a.control(ctx, controlRequest{Op: "jobs"})
	return ans.Jobs, err
}

// nowMillis is the time commands carry.
func nowMillis() int64 { return time.Now().UnixMilli() }

// controlView describes the control plane as this agent sees it.
func (a *Agent) controlView() ControlView {
	if a.ctl == nil {
		h, _ := a.leaderHint.Load().(string)
		return ControlView{Role: "client", Leader: h}
	}
	v := ControlView{Role: "follower", Leader: a.ctl.Leader(), Applied: a.ctl.AppliedIndex(), Committed: a.ctl.CommitIndex()}
	if a.ctl.IsLeader() {
		v.Role = "leader"
	}
	v.Voters, _ = a.ctl.Voters()
	return v
}

// listErrorLength bounds each job's error in a listing.
const listErrorLength = 1024

// listed is jobs as a listing carries them: without their arguments and
// restart causes, errors cut, so that a listing stays small whatever the
// jobs hold (10,000 jobs of 64 KiB of arguments each would not fit one
// message). A job's own record ("job") has them whole.
func listed(jobs []controlstate.Job) []controlstate.Job {
	for i := range jobs {
		j := &jobs[i]
		j.Args, j.Restarts = nil, nil
		if len(j.Error) > listErrorLength {
			j.Error = j.Error[:listErrorLength] + "… (fabric job status has the whole error)"
		}
	}
	return jobs
}

// fastTiming reports whether the agent runs with test-speed failure
// detection (membership.Fast): its periodic work runs faster too.
func (a *Agent) fastTiming() bool {
	p := a.cfg.Timing.ProbeInterval
	return p > 0 && p < 500*time.Millisecond
}
