// Package fabric is the agent: the shell around the agent's core
// (internal/core). It feeds the core events (worker messages, timers,
// messages from other nodes, membership) and carries out the effects the
// core returns: messages to workers and peers, worker processes to start
// and stop, timers, job output, object store operations. It never executes
// guest code itself; guests run in worker processes (`fabric worker`) that
// talk to the agent over a Unix socket and share the object arena with it.
//
// The agent runs on Linux. Client, the HTTP API's client, and the types
// it shares with the agent (types.go) build on every platform, so that
// the CLI's client commands run on macOS and Windows too.
//
// One mutex guards the core. Every effect applied while it is held is
// non-blocking: an append to a worker's or a peer's queue, a timer, a
// signal. What blocks (starting a process, writing to the object store,
// fetching a module or an object, writing a job's output) runs on
// goroutines of its own and reports back with an event.
package fabric
