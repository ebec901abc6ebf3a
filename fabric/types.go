package fabric

// The types and errors of the HTTP API that clients share with agents:
// this file and client.go build on every platform, the agent on Linux.

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Default addresses of an agent: one agent per machine.
const (
	DefaultGossipAddr = "0.0.0.0:7946"
	DefaultQUICAddr   = "0.0.0.0:7947"
	DefaultHTTPAddr   = "127.0.0.1:7948"
	// DefaultServeAddr is where the Serve ingress listens by default.
	DefaultServeAddr = "127.0.0.1:8000"
)

// NodeView is one node as the HTTP API and `fabric list nodes` show it.
type NodeView struct {
	ID        string             `json:"id"`
	Status    string             `json:"status"`
	Role      string             `json:"role"`
	Gossip    string             `json:"gossip"`
	QUIC      string             `json:"quic"`
	HTTP      string             `json:"http"`
	Resources map[string]float64 `json:"resources"`
	Used      map[string]float64 `json:"used"`
	Labels    map[string]string  `json:"labels,omitempty"`
}

// StatusView is the cluster's state as `fabric status` shows it.
type StatusView struct {
	Nodes map[string]int `json:"nodes"` // count by status
	// Total and Used sum the alive nodes' resources, as gossiped.
	Total map[string]float64 `json:"total"`
	Used  map[string]float64 `json:"used"`
	// Pending counts the tasks waiting on the answering node, and
	// PendingDemand sums what they ask for.
	Pending       int                `json:"pending"`
	PendingDemand map[string]float64 `json:"pending_demand"`
	// Workers are the answering node's workers.
	Workers WorkersView `json:"workers"`
	Node    string      `json:"node"` // the node that answered
	// Control is the control plane as the answering node sees it.
	Control ControlView `json:"control"`
}

// HistoryView is the cluster's recent past (`GET /v1/history`): the
// nodes' samples added up at each step, and each node's latest.
type HistoryView struct {
	Step    int            `json:"step_seconds"`
	Points  []HistoryPoint `json:"points"`
	Nodes   []NodeStats    `json:"nodes"`
	Missing []string       `json:"missing_nodes,omitempty"`
}

// HistoryPoint is one step of the cluster's recent past: the nodes that
// were sampled then, added up. Tasks are those the caller's token sees.
type HistoryPoint struct {
	Time  time.Time          `json:"time"`
	Nodes int                `json:"nodes"`
	Used  map[string]float64 `json:"used"`
	Total map[string]float64 `json:"total"`
	// StoreUsed counts the object stores' bytes, spilled ones included.
	StoreUsed     int64 `json:"store_used"`
	StoreCapacity int64 `json:"store_capacity"`
	Processes     int   `json:"worker_processes"`
	// Pending and Running count tasks and actor calls not ended;
	// Finished and Failed those that ended in the step before.
	Pending  int    `json:"pending"`
	Running  int    `json:"running"`
	Finished uint64 `json:"finished"`
	Failed   uint64 `json:"failed"`
}

// NodeStats is a node's latest sample: its object store, its worker
// processes and sandboxes, and the round trip to it from the node that
// answered (estimated from gossip's network coordinates).
type NodeStats struct {
	Node          string    `json:"node"`
	Time          time.Time `json:"time"`
	StoreUsed     int64     `json:"store_used"`
	StoreCapacity int64     `json:"store_capacity"`
	Processes     int       `json:"worker_processes"`
	// Busy, Parked and Idle count its sandboxes (instances of jobs'
	// modules): running, blocked in get or wait (of the busy), idle.
	Busy   int     `json:"sandboxes_busy"`
	Parked int     `json:"sandboxes_parked"`
	Idle   int     `json:"sandboxes_idle"`
	RTT    float64 `json:"rtt_ms"`
}

// DeploymentSpec is a deployment as PUT /v1/serve/deployments/{name} and
// `fabric serve deploy` take it (Ray Serve's config, in its names).
type DeploymentSpec struct {
	Name        string `json:"name"`
	Module      string `json:"module"` // the digest of a module uploaded or run before
	Class       string `json:"class"`
	RoutePrefix string `json:"route_prefix"`
	// NumReplicas (nil: 1).
	NumReplicas        *int               `json:"num_replicas,omitempty"`
	MaxOngoingRequests int                `json:"max_ongoing_requests,omitempty"`
	Resources          map[string]float64 `json:"resources,omitempty"`
	// Public routes answer requests without a token.
	Public bool `json:"public,omitempty"`
	// AutoscalingConfig lets the cluster choose the replicas (then
	// NumReplicas is how many to start with; nil: min_replicas, at least
	// one... or zero when min_replicas is 0).
	AutoscalingConfig *AutoscalingConfig `json:"autoscaling_config,omitempty"`
}

// AutoscalingConfig is Ray Serve's autoscaling_config: the replicas aim
// at TargetOngoingRequests requests in flight each (default 2), between
// MinReplicas (0: scale to zero when idle; the next request starts one)
// and MaxReplicas, adding after UpscaleDelayS seconds of wanting more
// (default 3) and removing after DownscaleDelayS of wanting fewer
// (default 60).
type AutoscalingConfig struct {
	MinReplicas           int      `json:"min_replicas"`
	MaxReplicas           int      `json:"max_replicas"`
	TargetOngoingRequests float64  `json:"target_ongoing_requests,omitempty"`
	UpscaleDelayS         *float64 `json:"upscale_delay_s,omitempty"`
	DownscaleDelayS       *float64 `json:"downscale_delay_s,omitempty"`
}

// DeploymentInfo is a deployment as the API lists it, with what the
// nodes host of it.
type DeploymentInfo struct {
	Name               string             `json:"name"`
	Tenant             string             `json:"tenant,omitempty"`
	Module             string             `json:"module"`
	Class              string             `json:"class"`
	RoutePrefix        string             `json:"route_prefix"`
	NumReplicas        int                `json:"num_replicas"`
	MaxOngoingRequests int                `json:"max_ongoing_requests"`
	Resources          map[string]float64 `json:"resources,omitempty"`
	Public             bool               `json:"public,omitempty"`
	AutoscalingConfig  *AutoscalingConfig `json:"autoscaling_config,omitempty"`
	Version            uint64             `json:"version"`
	Created            time.Time          `json:"created"`
	Updated            time.Time          `json:"updated"`
	// Running counts the replicas alive on the nodes that answered, of
	// this version; Nodes those replicas by node.
	Running int            `json:"running"`
	Nodes   map[string]int `json:"replicas_by_node"`
	// Starting counts the replicas placed whose constructor has not run
	// yet: they wait for a worker, the node's room or their tenant's
	// quota (max_actors, CPUs, memory).
	Starting int `json:"starting,omitempty"`
	Ongoing  int `json:"ongoing_requests"`
	// Status is HEALTHY when Running is NumReplicas, else UPDATING.
	Status  string   `json:"status"`
	Missing []string `json:"missing_nodes,omitempty"`
}

// DeploymentLogs is the latest output of a deployment's replicas, by
// node (each keeps the last 64 KiB of its replicas'); Missing names the
// nodes that did not answer.
type DeploymentLogs struct {
	Nodes   map[string]string `json:"nodes"`
	Missing []string          `json:"missing_nodes,omitempty"`
}

// ControlView is the control plane as one agent sees it.
type ControlView struct {
	Role   string `json:"role"`             // "leader", "follower" or "client"
	Leader string `json:"leader,omitempty"` // the leader's node ID, when known
	// Voters are the servers in the raft configuration (on servers).
	Voters []string `json:"voters,omitempty"`
	// Applied and Committed are raft indexes (on servers): a server has
	// caught up when its Applied reaches the leader's Committed.
	Applied   uint64 `json:"applied,omitempty"`
	Committed uint64 `json:"committed,omitempty"`
}

// WorkersView counts a node's workers (instances of jobs' modules) and
// worker processes for `fabric status`.
type WorkersView struct {
	Busy int `json:"busy"` // running an execution or hosting an actor
	// Parked counts the busy ones that do not count against Max: blocked
	// in get or wait, drivers, actors.
	Parked       int `json:"parked"`
	Idle         int `json:"idle"`          // kept for their job's next tasks
	Max          int `json:"max"`           // the most that run at once
	MaxInstances int `json:"max_instances"` // the most the node holds, parked ones included
	// Waiting counts the executions placed on the node that wait for a
	// worker.
	Waiting int `json:"waiting"`
	// Processes counts the worker processes that host them (one per job
	// with workers here, and one per driver).
	Processes int `json:"processes"`
}

// MediaJobStream is the framed form of a job's streamed response, which a
// client asks for with Accept: the body is frames of one kind byte
// (FrameStdout, FrameStderr, FrameResult), a 4-byte big-endian length and
// that many bytes. The last frame is the result, JSON (JobResultView), of
// any length. Without it, the body is the output as plain text and the
// result is in the trailers, cut to fit them.
const MediaJobStream = "application/vnd.fabric.job-stream"

// JobResultView is a job's result in its stream's last frame.
type JobResultView struct {
	Error    string `json:"error,omitempty"` // "" when the job succeeded
	ExitCode int    `json:"exit_code,omitempty"`
}

// Kinds of the frames of MediaJobStream.
const (
	FrameStdout = 1
	FrameStderr = 2
	FrameResult = 3
)

// maxFrame bounds one frame of a job stream.
const maxFrame = 16 << 20

// Trailer names of a job's streamed response.
const (
	TrailerJobError = "Fabric-Job-Error" // a Go-quoted string (strconv.Unquote), "" when the job succeeded
	// TrailerJobExitCode is the code the driver passed to os.Exit, when it
	// exited with one other than 0; absent otherwise.
	TrailerJobExitCode = "Fabric-Job-Exit-Code"
	// TrailerJobEnded is "true" when the stream ends with the job's end,
	// "false" when the job had not ended (a log read without following).
	TrailerJobEnded = "Fabric-Job-Ended"
)

// JobInfo is a job as the API and `fabric job` show it.
type JobInfo struct {
	ID          string     `json:"id"`
	Module      string     `json:"module"` // its SHA-256 digest
	Args        []string   `json:"args,omitempty"`
	Node        string     `json:"node"` // where its driver runs (ran)
	State       string     `json:"state"`
	Submitted   time.Time  `json:"submitted"`
	Started     *time.Time `json:"started,omitempty"`
	Ended       *time.Time `json:"ended,omitempty"`
	Error       string     `json:"error,omitempty"`
	ExitCode    int        `json:"exit_code,omitempty"`
	Attempt     uint32     `json:"attempt"`
	MaxRestarts uint32     `json:"max_restarts,omitempty"`
	Restarts    []string   `json:"restarts,omitempty"` // why each restart happened
	// Tenant submitted the job, with the token Owner (both empty: the
	// cluster's operator, with a cluster admin token).
	Tenant string `json:"tenant,omitempty"`
	Owner  string `json:"owner,omitempty"`
}

// TaskInfo is a task as the state API (`GET /v1/tasks`, `fabric list
// tasks`) lists it: one row per attempt that ended, and one per task
// that has not.
type TaskInfo struct {
	ID string `json:"task_id"`
	// Job is the job's ID as the caller knows it (its run's ID for work
	// of no job of the cluster's records: a module's call).
	Job    string `json:"job"`
	Tenant string `json:"tenant,omitempty"`
	Name   string `json:"name"`
	// Kind is task, method (an actor's) or driver.
	Kind  string `json:"kind"`
	Actor string `json:"actor_id,omitempty"`
	// State is pending (waiting for its arguments or resources),
	// running (placed), finished or failed.
	State     string     `json:"state"`
	Node      string     `json:"node"`
	Pid       int        `json:"pid,omitempty"`
	Attempt   int        `json:"attempt"`
	Error     string     `json:"error,omitempty"` // the error's message and the guest's stack
	ErrorType string     `json:"error_type,omitempty"`
	Submitted time.Time  `json:"submitted"`
	Placed    *time.Time `json:"placed,omitempty"`
	Started   *time.Time `json:"started,omitempty"`
	Ended     *time.Time `json:"ended,omitempty"`
}

// TaskList is a page of the state API's tasks: the newest that match,
// oldest first; Total counts all that match; Missing names the nodes
// that did not answer in time (their tasks are not in it).
type TaskList struct {
	Tasks   []TaskInfo `json:"tasks"`
	Total   int        `json:"total"`
	Missing []string   `json:"missing_nodes,omitempty"`
}

// ActorInfo is an actor as the state API (`GET /v1/actors`, `fabric
// list actors`) lists it.
type ActorInfo struct {
	ID        string `json:"actor_id"`
	Job       string `json:"job"`
	Tenant    string `json:"tenant,omitempty"`
	Class     string `json:"class"`
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// State is pending, alive, restarting or dead.
	State      string    `json:"state"`
	Node       string    `json:"node"`
	Pid        int       `json:"pid,omitempty"`
	Restarts   int       `json:"restarts"`
	Detached   bool      `json:"detached,omitempty"`
	DeathCause string    `json:"death_cause,omitempty"`
	Created    time.Time `json:"created"`
}

// ObjectInfo is an object as the state API (`GET /v1/objects`, `fabric
// list objects`) lists it: the records of the nodes that know it,
// merged.
type ObjectInfo struct {
	ID     string `json:"object_id"`
	Job    string `json:"job,omitempty"`
	Tenant string `json:"tenant,omitempty"`
	Size   int64  `json:"size"`
	// State is pending (not made yet), ready or error (its value is an
	// error).
	State string `json:"state"`
	// Locations are the nodes that hold its bytes (in their object store,
	// or in the agent's memory when Inline).
	Locations []string `json:"locations"`
	Inline    bool     `json:"inline,omitempty"`
	Spilled   bool     `json:"spilled,omitempty"`
	// Refs counts the references the nodes' records hold.
	Refs     int    `json:"refs"`
	Producer string `json:"producer,omitempty"` // the task that makes or made it
}

// ObjectList is a page of the state API's objects, by ID.
type ObjectList struct {
	Objects []ObjectInfo `json:"objects"`
	Total   int          `json:"total"`
	Missing []string     `json:"missing_nodes,omitempty"`
}

// PlacementGroupInfo is a placement group as the state API (`GET
// /v1/placement-groups`, `fabric list placement-groups`) lists it.
type PlacementGroupInfo struct {
	ID       string `json:"placement_group_id"`
	Job      string `json:"job"`
	Tenant   string `json:"tenant,omitempty"`
	Name     string `json:"name,omitempty"`
	Strategy string `json:"strategy"`
	// State is pending, created or failed (Reason says why).
	State    string               `json:"state"`
	Reason   string               `json:"reason,omitempty"`
	Bundles  []map[string]float64 `json:"bundles"`
	Nodes    []string             `json:"bundle_nodes,omitempty"` // each bundle's node, once created
	Detached bool                 `json:"detached,omitempty"`
	Node     string               `json:"node"` // the node whose job made it
}

// PlacementGroupList is the state API's placement groups, by ID.
type PlacementGroupList struct {
	Groups  []PlacementGroupInfo `json:"placement_groups"`
	Total   int                  `json:"total"`
	Missing []string             `json:"missing_nodes,omitempty"`
}

// WorkerInfo is a worker (a sandbox instance of a job's module, in its
// job's worker process) as the state API (`GET /v1/workers`, `fabric list
// workers`) lists it.
type WorkerInfo struct {
	ID     uint64 `json:"worker_id"` // unique on its node
	Node   string `json:"node"`
	Job    string `json:"job"`
	Tenant string `json:"tenant,omitempty"`
	Pid    int    `json:"pid,omitempty"`
	// State is starting, loading, idle, busy, parked (busy, blocked in
	// get or wait) or stopping.
	State   string `json:"state"`
	Kind    string `json:"kind"` // driver, actor or task
	Running string `json:"running,omitempty"`
	Leased  bool   `json:"leased,omitempty"`
}

// WorkerList is the state API's workers, by node.
type WorkerList struct {
	Workers []WorkerInfo `json:"workers"`
	Total   int          `json:"total"`
	Missing []string     `json:"missing_nodes,omitempty"`
}

// ActorList is a page of the state API's actors, as TaskList is of
// tasks.
type ActorList struct {
	Actors  []ActorInfo `json:"actors"`
	Total   int         `json:"total"`
	Missing []string    `json:"missing_nodes,omitempty"`
}

// TaskSummary counts the tasks by function (`GET /v1/tasks/summary`,
// `fabric summary tasks`).
type TaskSummary struct {
	Rows    []TaskSummaryRow `json:"functions"`
	Total   int              `json:"total"`
	Missing []string         `json:"missing_nodes,omitempty"`
}

// TaskSummaryRow is one function's tasks by state, and their retries.
type TaskSummaryRow struct {
	Name   string         `json:"name"`
	Kind   string         `json:"kind"`
	States map[string]int `json:"states"`
	Total  int            `json:"total"`
	// Retries counts the runs again of these tasks (attempts past the
	// first, of a lost worker or node, or of a retried error).
	Retries int `json:"retries"`
}

// ActorSummary counts the actors by class (`GET /v1/actors/summary`,
// `fabric summary actors`).
type ActorSummary struct {
	Rows    []ActorSummaryRow `json:"classes"`
	Total   int               `json:"total"`
	Missing []string          `json:"missing_nodes,omitempty"`
}

// ActorSummaryRow is one class's actors by state, and how many times
// they were restarted in all.
type ActorSummaryRow struct {
	Class    string         `json:"class"`
	States   map[string]int `json:"states"`
	Total    int            `json:"total"`
	Restarts int            `json:"restarts"`
}

// ObjectSummary counts the objects by job (`GET /v1/objects/summary`,
// `fabric summary objects`), each once however many nodes hold it.
type ObjectSummary struct {
	Rows    []ObjectSummaryRow `json:"jobs"`
	Total   int                `json:"total"`
	Bytes   int64              `json:"bytes"`
	Missing []string           `json:"missing_nodes,omitempty"`
	// Truncated names the nodes with more objects than a summary counts
	// (200,000): the figures leave the rest out.
	Truncated []string `json:"truncated_nodes,omitempty"`
}

// ObjectSummaryRow is one job's objects ("" for objects of no job).
type ObjectSummaryRow struct {
	Job          string         `json:"job"`
	Tenant       string         `json:"tenant,omitempty"`
	Objects      int            `json:"objects"`
	Bytes        int64          `json:"bytes"`
	States       map[string]int `json:"states"` // pending, ready, error
	Spilled      int            `json:"spilled"`
	SpilledBytes int64          `json:"spilled_bytes"`
}

// ModuleInfo is an uploaded module as the API and `fabric module list`
// show it.
type ModuleInfo struct {
	Digest string    `json:"digest"`
	Size   int64     `json:"size"`
	Name   string    `json:"name,omitempty"`
	Added  time.Time `json:"added"`
	Nodes  []string  `json:"nodes"` // the nodes that hold a copy
	// Uploaded is set for modules stored with `fabric upload` (kept until
	// deleted); the others are jobs' modules, removed from nodes once no
	// job uses them and the nodes' module disk passes its limit.
	Uploaded bool `json:"uploaded,omitempty"`
	// Tenants stored it (shown to the cluster's operator only).
	Tenants []string `json:"tenants,omitempty"`
}

// CallResult is the answer of `fabric call`: the function's value as
// JSON, and the output it printed.
type CallResult struct {
	Value  json.RawMessage `json:"value"`
	Node   string          `json:"node"`
	Output string          `json:"output,omitempty"`
}

// CallError is the error a called function failed with.
type CallError struct {
	Kind    string
	Message string
}

func (e *CallError) Error() string {
	return fmt.Sprintf("fabric: the function failed (%s): %s", e.Kind, e.Message)
}

// Errors of the control plane, as the API maps them.
var (
	ErrNoJob        = errors.New("fabric: no job with that ID")
	ErrJobExists    = errors.New("fabric: a job with that ID exists")
	ErrJobNotEnded  = errors.New("fabric: the job has not ended")
	ErrBadRequest   = errors.New("fabric: bad request")
	ErrTooMany      = errors.New("fabric: too many")
	ErrNoModuleHere = errors.New("fabric: no module with that digest")
	ErrModuleInUse  = errors.New("fabric: the module is in use")
	ErrStale        = errors.New("fabric: the change is about a state that has passed")
	ErrNoTenant     = errors.New("fabric: no tenant with that name")
	ErrTenantExists = errors.New("fabric: a tenant with that name exists")
	ErrNoToken      = errors.New("fabric: no token with that ID")
	ErrUnauthorized = errors.New("fabric: the token does not open this")
	ErrForbidden    = errors.New("fabric: the token's role does not allow this")
	ErrQuota        = errors.New("fabric: past the tenant's quota")
	ErrTokenExists  = errors.New("fabric: a token with that ID exists")
	ErrNodeExists   = errors.New("fabric: a node with that ID was admitted already")
	ErrNoNode       = errors.New("fabric: no node with that ID was admitted")
	ErrUnsigned     = errors.New("fabric: the module is not signed with a key of the tenant")
	ErrNoKey        = errors.New("fabric: no such key of the tenant")
	ErrKeyExists    = errors.New("fabric: the tenant has that key")
	ErrNoDeployment = errors.New("fabric: no deployment with that name")
	ErrRouteTaken   = errors.New("fabric: another deployment holds that route prefix")
	// ErrNoLeader means no server of the control plane answered: none is
	// up, or they are electing a leader.
	ErrNoLeader = errors.New("fabric: no control-plane server answered")
)

// ErrDraining refuses new work on an agent that is draining.
var ErrDraining = errors.New("fabric: the agent is draining (it is stopping); submit to another agent")

// JobError is the error of a job whose driver failed: its message, and the
// code its driver passed to os.Exit when it exited with one other than 0.
// It matches ErrJob.
type JobError struct {
	Message  string
	ExitCode int
}

func (e *JobError) Error() string { return e.Message }

// Is matches ErrJob.
func (e *JobError) Is(target error) bool { return target == ErrJob }

// TenantInfo is a tenant: a party that shares the cluster.
type TenantInfo struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	// MaxJobs bounds the tenant's jobs that have not ended (0: no bound).
	MaxJobs uint32 `json:"max_jobs,omitempty"`
	// MaxCPUs, MaxGPUs and MaxMemory (bytes) bound what the tenant's
	// running tasks and actors hold across the cluster, MaxTasks how many
	// run at once (0: no bound). Tasks past them wait.
	MaxCPUs   float64 `json:"max_cpus,omitempty"`
	MaxGPUs   float64 `json:"max_gpus,omitempty"`
	MaxMemory int64   `json:"max_memory,omitempty"`
	MaxTasks  uint32  `json:"max_tasks,omitempty"`
	// MaxObjectStore and MaxSpill bound, on each node, the bytes of the
	// tenant's objects (in memory or spilled) and of its spill files (0:
	// no bound; without one, a tenant's spill files hold at most an equal
	// share of a node's spill room). Puts past them fail.
	MaxObjectStore int64 `json:"max_object_store,omitempty"`
	MaxSpill       int64 `json:"max_spill,omitempty"`
	// MaxActors bounds how many of the tenant's actors live at once
	// across the cluster (0: no bound); an actor also counts among
	// MaxTasks. Actors past it wait to be created.
	MaxActors uint32 `json:"max_actors,omitempty"`
}

// TokenInfo is an API token's record; its secret is shown once, when it
// is made (NewToken), and never stored.
type TokenInfo struct {
	ID      string    `json:"id"`
	Tenant  string    `json:"tenant"`
	Role    string    `json:"role"` // admin, operator or user
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"`
	Revoked time.Time `json:"revoked,omitzero"`
	Note    string    `json:"note,omitempty"`
	// State is active, expired or revoked, as of the answer.
	State string `json:"state"`
}

// JoinTokenRequest asks for a join token.
type JoinTokenRequest struct {
	TTL    time.Duration `json:"ttl,omitempty"`
	Server bool          `json:"server,omitempty"`
	Note   string        `json:"note,omitempty"`
}

// Lifetimes of certificates and join tokens.
const (
	// DefaultCertTTL is how long a node's certificate is valid; it is
	// renewed when a third of that is left.
	DefaultCertTTL = 30 * 24 * time.Hour
	// DefaultJoinTokenTTL is how long a join token works when its
	// creator does not say.
	DefaultJoinTokenTTL = time.Hour
	// MaxJoinTokenTTL bounds a join token's life.
	MaxJoinTokenTTL = 7 * 24 * time.Hour
)

// GossipKeyRotation says how a rotation went.
type GossipKeyRotation struct {
	// Nodes took every step.
	Nodes []string `json:"nodes"`
	// Missed could not be told to install the new key: the old key was
	// kept, so they still gossip; rotate again once they are back.
	Missed []string `json:"missed,omitempty"`
	// OldKeyKept is set when the old key was kept for them.
	OldKeyKept bool `json:"old_key_kept,omitempty"`
}

// JoinTokenInfo is a join token's record: never its secret.
type JoinTokenInfo struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	Server  bool      `json:"server,omitempty"`
	Note    string    `json:"note,omitempty"`
	// State is usable, used or expired, as of the answer.
	State  string `json:"state"`
	UsedBy string `json:"used_by,omitempty"`
}

// NewJoinToken is a join token just made, with its secret.
type NewJoinToken struct {
	JoinTokenInfo
	Token string `json:"token"`
}

// NodeRecordInfo is what the control state knows of a node's admission.
type NodeRecordInfo struct {
	ID      string    `json:"id"`
	Joined  time.Time `json:"joined"`
	Server  bool      `json:"server,omitempty"`
	Revoked time.Time `json:"revoked,omitzero"`
}

// NewToken is a token just made, with its secret.
type NewToken struct {
	TokenInfo
	Token string `json:"token"`
}

// TokenRequest asks for a token of a tenant with a role; TTL 0 makes one
// that does not expire.
type TokenRequest struct {
	Tenant string        `json:"tenant"`
	Role   string        `json:"role"`
	TTL    time.Duration `json:"ttl"`
	Note   string        `json:"note,omitempty"`
}

// Identity is who a request's token says its bearer is: the cluster's
// operator (a cluster admin token), or a tenant's token.
type Identity struct {
	// Cluster is set for a cluster admin token: every route, every
	// tenant.
	Cluster bool      `json:"cluster,omitempty"`
	Token   TokenInfo `json:"token,omitzero"`
}

// HeaderModuleSignature carries a module's signature (base64 of the
// ed25519 signature of controlstate.ModuleSigningMessage(digest)).
const HeaderModuleSignature = "Fabric-Module-Signature"

// TenantKeyInfo is a tenant's module signing key.
type TenantKeyInfo struct {
	ID    string    `json:"id"`
	Key   string    `json:"key"` // base64 of the ed25519 public key
	Added time.Time `json:"added"`
	Note  string    `json:"note,omitempty"`
}
