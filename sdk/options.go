package sdk

import (
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
)

// Option sets a resource demand or a policy of a task or an actor. Options
// given at registration apply to every call; Options(...) on a task or
// class adds per-call ones on top.
type Option func(*abi.Options)

// CPUs sets the CPUs a task needs while it runs; fractions such as 0.25 are
// allowed (default 1 for tasks, 0 for actors).
func CPUs(n float64) Option { return func(o *abi.Options) { o.CPU = &n } }

// GPUs sets the GPUs a task needs (fractions allowed).
func GPUs(n float64) Option { return func(o *abi.Options) { o.GPU = n } }

// Memory sets the bytes of memory a task reserves on its node.
func Memory(bytes int64) Option { return func(o *abi.Options) { o.Memory = bytes } }

// Resource sets an amount of a custom resource (for example "TPU").
func Resource(name string, amount float64) Option {
	return func(o *abi.Options) {
		if o.Resources == nil {
			o.Resources = map[string]float64{}
		}
		o.Resources[name] = amount
	}
}

// MaxRetries sets how often a task is retried after its worker died or
// its guest exited (os.Exit): system failures, not errors the task
// returned (default 3; -1 retries forever).
func MaxRetries(n int) Option { return func(o *abi.Options) { o.MaxRetries = &n } }

// RetryExceptions makes application errors count as retriable too, under
// MaxRetries: with no arguments every error (a returned error, a panic, a
// trap); with sentinels, only returned errors that wrap one of them
// (errors.Is), as Ray's retry_exceptions takes a list. The sentinels are
// registered (RegisterError). For error types, see RetryOn.
func RetryExceptions(sentinels ...error) Option {
	if len(sentinels) == 0 {
		return func(o *abi.Options) { o.RetryExceptions = true }
	}
	names := make([]string, len(sentinels))
	for i, s := range sentinels {
		RegisterError(s)
		names[i] = sentinelName(s)
	}
	return func(o *abi.Options) { o.RetryOn = append(o.RetryOn, names...) }
}

// TaskTimeout bounds one attempt of the task; past it the worker is killed
// and the task fails with ErrTaskTimeout.
func TaskTimeout(d time.Duration) Option {
	return func(o *abi.Options) { o.TimeoutMs = d.Milliseconds() }
}

// Name sets the name shown in output and listings; for an actor it is the
// name other tasks look it up by (GetActor).
func Name(name string) Option { return func(o *abi.Options) { o.Name = name } }

// MaxTaskRetries sets how often an actor's method call that was running,
// or sent ahead to it, when the actor died runs again once the actor has
// restarted (MaxRestarts), instead of failing with ErrActorDied (default
// 0; -1 forever). As an actor option it applies to every call; as a
// method's per-call option (Method1.Options) to that call, as in Ray.
func MaxTaskRetries(n int) Option { return func(o *abi.Options) { o.MaxTaskRetries = n } }

// GetIfExists makes creating an actor whose Name is taken in the job
// return a handle to the actor that has it, instead of an error (Ray's
// get_if_exists).
func GetIfExists() Option { return func(o *abi.Options) { o.GetIfExists = true } }

// MaxRestarts sets how often an actor is restarted after its worker died
// or one of its methods exited (os.Exit).
func MaxRestarts(n int) Option { return func(o *abi.Options) { o.MaxRestarts = n } }

// Detached makes an actor outlive the job that creates it (Ray's
// lifetime="detached"): it lives on until it is killed, and later jobs
// find it with GetActor(class, name, InNamespace(ns)), call it and kill
// it. It needs a Name; its namespace is Namespace's, or "default". It
// lives on the node of the job that created it, in a job of its own made
// from the same module; its output goes to the job of each call.
func Detached() Option { return func(o *abi.Options) { o.Lifetime = abi.LifetimeDetached } }

// Namespace puts a named actor in a namespace, where other jobs on the
// node find it (GetActor with InNamespace), call it and kill it; without,
// only its own job finds it. Values passed to its methods from another
// job travel inline; references nested in them do not cross jobs.
func Namespace(ns string) Option { return func(o *abi.Options) { o.Namespace = ns } }

// MaxConcurrency makes an actor serve up to n method calls at once (Ray's
// max_concurrency on an async actor): each call runs on a goroutine of
// its own inside the actor's one instance, and a call's Get, Wait and
// calls to other actors park only its goroutine. Guard state the calls
// share as any Go code run by goroutines would; a loop that never blocks
// holds up the other calls, as in asyncio. The default, 1, runs calls one
// at a time, in order. At most 10000.
func MaxConcurrency(n int) Option { return func(o *abi.Options) { o.MaxConcurrency = n } }

// ConcurrencyGroups gives an actor named groups of methods, each with its
// own limit of calls at once (Ray's concurrency_groups); a method joins
// one with the per-call option ConcurrencyGroup. Methods in no group
// share the default group, limited by MaxConcurrency. An actor with
// groups serves its calls concurrently, as MaxConcurrency above 1 does.
func ConcurrencyGroups(limits map[string]int) Option {
	return func(o *abi.Options) {
		if o.ConcurrencyGroups == nil {
			o.ConcurrencyGroups = map[string]int{}
		}
		for g, n := range limits {
			o.ConcurrencyGroups[g] = n
		}
	}
}

// ConcurrencyGroup runs a method call in one of its actor's concurrency
// groups: give it as the method's option (Method1.Options), for every
// call, or on one call. A group the actor does not have fails the call.
func ConcurrencyGroup(name string) Option {
	return func(o *abi.Options) { o.ConcurrencyGroup = name }
}

// NodeLabel restricts placement to nodes that carry the label key=value.
func NodeLabel(key, value string) Option {
	return func(o *abi.Options) {
		if o.Labels == nil {
			o.Labels = map[string]string{}
		}
		o.Labels[key] = value
	}
}

// SchedulingStrategy chooses how tasks or actors are spread over the
// nodes, as Ray's scheduling_strategy: Spread ("SPREAD") places each on
// the next node with room, the nodes taking turns in ID order; "DEFAULT" (or
// Pack) packs work onto nodes until they are half used, then spreads it.
// Any other strategy is refused when the task is submitted.
func SchedulingStrategy(strategy string) Option {
	if strategy == "DEFAULT" || strategy == Pack {
		strategy = ""
	}
	return func(o *abi.Options) { o.Strategy = strategy }
}

// NodeAffinity runs the task or actor on the node with this ID (from
// Nodes or GetRuntimeContext). Hard (soft false): only there; it fails
// with ErrInfeasible when no such node is in the cluster. Soft: there
// when it has room, elsewhere otherwise (Ray's
// NodeAffinitySchedulingStrategy).
func NodeAffinity(nodeID string, soft bool) Option {
	return func(o *abi.Options) { o.Node, o.Soft = nodeID, soft }
}

func selector(key, op string, values []string) Option {
	return func(o *abi.Options) {
		o.Selector = append(o.Selector, abi.LabelTerm{Key: key, Op: op, Values: values})
	}
}

// LabelIn restricts placement to nodes whose label key has one of the
// values (Ray's label selector "in(...)"; with one value, equals, as
// NodeLabel). Label options add up: every one must hold.
func LabelIn(key string, values ...string) Option { return selector(key, abi.LabelIn, values) }

// LabelNotIn restricts placement to nodes whose label key has none of the
// values, or that lack the label (Ray's "!in(...)"; with one value, not
// equals).
func LabelNotIn(key string, values ...string) Option { return selector(key, abi.LabelNotIn, values) }

// LabelExists restricts placement to nodes that have the label key.
func LabelExists(key string) Option { return selector(key, abi.LabelExists, nil) }

// LabelNotExists restricts placement to nodes that lack the label key.
func LabelNotExists(key string) Option { return selector(key, abi.LabelNotExists, nil) }

func applyOptions(base []Option, extra []Option) abi.Options {
	var o abi.Options
	for _, f := range base {
		f(&o)
	}
	for _, f := range extra {
		f(&o)
	}
	return o
}
