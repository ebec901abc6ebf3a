// Package controlstate is the cluster's replicated control state: jobs,
// uploaded modules, named actors and groups, tenants and their tokens. It is a deterministic state machine with no I/O, no
// clock and no randomness: commands come in (carrying the time and every
// choice their proposer made), and Apply changes the state the same way on
// every server, so raft can replicate it by replicating the commands. The
// raft wiring is in internal/control.
package controlstate

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// JobState is where a job is in its life.
type JobState string

// A job is pending from its submission until its driver starts, running
// until it ends, then succeeded, failed or stopped.
const (
	Pending   JobState = "pending"
	Running   JobState = "running"
	Succeeded JobState = "succeeded"
	Failed    JobState = "failed"
	Stopped   JobState = "stopped"
)

// Ended reports whether the state is a final one.
func (s JobState) Ended() bool { return s == Succeeded || s == Failed || s == Stopped }

// Job is a submitted job. Times are Unix milliseconds, as proposed.
type Job struct {
	ID     string   `cbor:"1,keyasint" json:"id"`
	Digest string   `cbor:"2,keyasint" json:"module"`
	Args   []string `cbor:"3,keyasint,omitempty" json:"args,omitempty"`
	// Node runs the job's driver (this attempt's).
	Node      string   `cbor:"4,keyasint" json:"node"`
	State     JobState `cbor:"5,keyasint" json:"state"`
	Submitted int64    `cbor:"6,keyasint" json:"submitted"`
	Started   int64    `cbor:"7,keyasint,omitempty" json:"started,omitempty"`
	Ended     int64    `cbor:"8,keyasint,omitempty" json:"ended,omitempty"`
	// Error says why the job failed or was stopped.
	Error    string `cbor:"9,keyasint,omitempty" json:"error,omitempty"`
	ExitCode int    `cbor:"10,keyasint,omitempty" json:"exit_code,omitempty"`
	// Attempt counts the driver's starts: 1, then one more per restart.
	Attempt     uint32 `cbor:"11,keyasint" json:"attempt"`
	MaxRestarts uint32 `cbor:"12,keyasint,omitempty" json:"max_restarts,omitempty"`
	// Restarts lists why each restart happened.
	Restarts []string `cbor:"13,keyasint,omitempty" json:"restarts,omitempty"`
	// Tenant submitted the job ("": the cluster's operator), with the
	// token Owner.
	Tenant string `cbor:"14,keyasint,omitempty" json:"tenant,omitempty"`
	Owner  string `cbor:"15,keyasint,omitempty" json:"owner,omitempty"`
	// Runs are the attempts' runs, in order (Start.Run).
	Runs []string `cbor:"16,keyasint,omitempty" json:"runs,omitempty"`
}

// Module is an uploaded module, by its SHA-256 digest (hex).
type Module struct {
	Digest string `cbor:"1,keyasint" json:"digest"`
	Size   int64  `cbor:"2,keyasint" json:"size"`
	Name   string `cbor:"3,keyasint,omitempty" json:"name,omitempty"`
	Added  int64  `cbor:"4,keyasint" json:"added"`
	// Nodes hold a copy, sorted.
	Nodes []string `cbor:"5,keyasint" json:"nodes"`
	// Uploaded is set for a module stored with `fabric upload`: its last
	// copy is kept until the module is deleted. A job's module may go once
	// no job that has not ended uses it.
	Uploaded bool `cbor:"6,keyasint,omitempty" json:"uploaded,omitempty"`
	// Tenants stored the module (uploaded it or ran a job of it), sorted:
	// they see it. Operator is set when the cluster's operator did.
	Tenants  []string `cbor:"7,keyasint,omitempty" json:"tenants,omitempty"`
	Operator bool     `cbor:"8,keyasint,omitempty" json:"operator,omitempty"`
	// Signers are the tenants' keys that signed it, as "tenant/key ID",
	// sorted (see keys.go).
	Signers []string `cbor:"9,keyasint,omitempty" json:"signers,omitempty"`
}

// Limits of the state, so that no client can grow it without bound.
const (
	// MaxJobs bounds the jobs kept; past it, a submission evicts the job
	// that ended first, and is refused when none has ended.
	MaxJobs = 10000
	// MaxModules bounds the uploaded modules kept.
	MaxModules = 4096
	// MaxArgs and MaxArgBytes bound a job's arguments.
	MaxArgs     = 256
	MaxArgBytes = 64 << 10
	// MaxIDLength bounds job IDs and node IDs.
	MaxIDLength = 128
	// MaxErrorLength bounds a job's kept error.
	MaxErrorLength = 64 << 10
	// MaxRestarts bounds a job's max restarts.
	MaxRestarts = 100
)

// Errors of Apply.
var (
	ErrJobExists     = errors.New("controlstate: a job with that ID exists")
	ErrNoJob         = errors.New("controlstate: no job with that ID")
	ErrJobRunning    = errors.New("controlstate: the job has not ended")
	ErrTooManyJobs   = errors.New("controlstate: too many jobs that have not ended")
	ErrStale         = errors.New("controlstate: the command is about an attempt or state that has passed")
	ErrBadCommand    = errors.New("controlstate: malformed command")
	ErrNoModule      = errors.New("controlstate: no module with that digest")
	ErrModuleInUse   = errors.New("controlstate: a job that has not ended uses the module")
	ErrTooManyModule = errors.New("controlstate: too many modules")
)

// State is the control state. Its zero value is not ready; use New.
type State struct {
	jobs    map[string]*Job
	modules map[string]*Module
	names   map[string]*ActorName // by nameKey
	tenants map[string]*Tenant
	tokens  map[string]*Token // by ID
	// tokenHashes indexes tokens by their hash (as a string).
	tokenHashes map[string]string
	joinTokens  map[string]*JoinToken
	nodes       map[string]*NodeRecord
	deployments map[string]*Deployment // by key
	// requests are the answers to the last MaxRequests named commands,
	// and order their names, oldest first.
	requests map[string]requestResult
	order    []string
}

// MaxRequests bounds the named commands whose answers are kept for
// retries.
const MaxRequests = 8192

// requestResult is a named command's answer: the index of its sentinel
// in sentinels (0: none, -1: no error) and its message.
type requestResult struct {
	Name  string `cbor:"1,keyasint"`
	Kind  int    `cbor:"2,keyasint"`
	Error string `cbor:"3,keyasint,omitempty"`
}

var sentinels = []error{nil, ErrJobExists, ErrNoJob, ErrJobRunning, ErrTooManyJobs, ErrStale, ErrBadCommand,
	ErrNoModule, ErrModuleInUse, ErrTooManyModule, ErrNameTaken, ErrTooManyNames,
	ErrTenantExists, ErrNoTenant, ErrTooManyTenants, ErrTokenExists, ErrNoToken, ErrTooManyTokens, ErrQuota,
	ErrNoJoinToken, ErrJoinTokenUsed, ErrJoinTokenExpired, ErrNodeExists, ErrNoNode, ErrNodeRevoked, ErrTooManyNodes,
	ErrNoDeployment, ErrRouteTaken}

func (r requestResult) err() error {
	switch {
	case r.Kind < 0:
		return nil
	case r.Kind > 0 && r.Kind < len(sentinels):
		return fmt.Errorf("%w%s", sentinels[r.Kind], strings.TrimPrefix(r.Error, sentinels[r.Kind].Error()))
	}
	return errors.New(r.Error)
}

func (s *State) remember(name string, err error) {
	r := requestResult{Name: name, Kind: -1}
	if err != nil {
		r.Kind, r.Error = 0, err.Error()
		for i, e := range sentinels[1:] {
			if errors.Is(err, e) {
				r.Kind = i + 1
				break
			}
		}
	}
	s.requests[name] = r
	s.order = append(s.order, name)
	if len(s.order) > MaxRequests {
		delete(s.requests, s.order[0])
		s.order = s.order[1:]
	}
}

// New returns an empty state.
func New() *State {
	return &State{jobs: map[string]*Job{}, modules: map[string]*Module{}, names: map[string]*ActorName{},
		tenants: map[string]*Tenant{}, tokens: map[string]*Token{}, tokenHashes: map[string]string{},
		joinTokens: map[string]*JoinToken{}, nodes: map[string]*NodeRecord{}, deployments: map[string]*Deployment{}, requests: map[string]requestResult{}}
}

// Job returns a copy of the job with the ID.
func (s *State) Job(id string) (Job, bool) {
	j, ok := s.jobs[id]
	if !ok {
		return Job{}, false
	}
	return j.clone(), true
}

// Jobs returns copies of the jobs that match keep (nil: all), by
// submission time, then ID.
func (s *State) Jobs(keep func(*Job) bool) []Job {
	out := make([]Job, 0, len(s.jobs))
	for _, j := range s.jobs {
		if keep == nil || keep(j) {
			out = append(out, j.clone())
		}
	}
	slices.SortFunc(out, func(a, b Job) int {
		return cmp.Or(cmp.Compare(a.Submitted, b.Submitted), strings.Compare(a.ID, b.ID))
	})
	return out
}

// Module returns a copy of the module with the digest.
func (s *State) Module(digest string) (Module, bool) {
	m, ok := s.modules[digest]
	if !ok {
		return Module{}, false
	}
	return m.clone(), true
}

// Modules returns copies of the modules, by digest.
func (s *State) Modules() []Module {
	out := make([]Module, 0, len(s.modules))
	for _, m := range s.modules {
		out = append(out, m.clone())
	}
	slices.SortFunc(out, func(a, b Module) int { return strings.Compare(a.Digest, b.Digest) })
	return out
}

func (j *Job) clone() Job {
	c := *j
	c.Args = slices.Clone(j.Args)
	c.Restarts = slices.Clone(j.Restarts)
	c.Runs = slices.Clone(j.Runs)
	return c
}

func (m *Module) clone() Module {
	c := *m
	c.Nodes = slices.Clone(m.Nodes)
	c.Tenants = slices.Clone(m.Tenants)
	return c
}

// ValidID reports whether s is a valid job ID: 1 to 64 letters, digits,
// '-', '_' and '.', not starting with '.' or '-'.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// JobKey is the control state's key of a tenant's job named name: the
// name itself for the cluster's operator (tenant ""), else
// "tenant:name". Each tenant names its jobs in a space of its own, so
// no tenant learns which names another uses.
func JobKey(tenant, name string) string {
	if tenant == "" {
		return name
	}
	return tenant + ":" + name
}

// JobName is the name part of a job's key: the ID its tenant knows it by.
func JobName(key string) string {
	_, name := splitJobKey(key)
	return name
}

func splitJobKey(key string) (tenant, name string) {
	if i := strings.IndexByte(key, ':'); i >= 0 {
		return key[:i], key[i+1:]
	}
	return "", key
}

// ValidJobKey reports whether key is a valid job key: a valid ID, or a
// valid tenant name and ID joined by ':'.
func ValidJobKey(key string) bool {
	tenant, name := splitJobKey(key)
	return ValidID(name) && (tenant == "" && !strings.Contains(key, ":") || ValidID(tenant))
}

// ValidDigest reports whether s is a SHA-256 digest in lower-case hex.
func ValidDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + fmt.Sprintf("… [%d more bytes]", len(s)-n)
}
