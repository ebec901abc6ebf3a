// Package control replicates the cluster's control state
// (internal/controlstate) across the server agents with hashicorp/raft:
// the raft log and its stable values in one bbolt file, snapshots as
// files, and raft's connections as streams of the agents' QUIC transport
// (mutual TLS with the cluster's certificates), so that the control plane
// opens no port of its own. Servers are named by node ID; their addresses
// are looked up at each dial, so a server that comes back on another port
// is still reached.
package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/wasmfabric/fabric/internal/controlstate"
)

// Config configures a server.
type Config struct {
	// NodeID names the server in the raft configuration.
	NodeID string
	// Dir holds raft.db and the snapshots.
	Dir string
	// Bootstrap forms a cluster of this one server when Dir holds no raft
	// state: the first server of a new cluster. Others wait to be added
	// by the leader.
	Bootstrap bool
	// Resolve returns the address of a server by node ID, and Dial opens
	// a raft stream to an address.
	Resolve func(nodeID string) (string, error)
	Dial    func(ctx context.Context, addr string) (net.Conn, error)
	// Addr is this server's own address, as Resolve gives it.
	Addr string
	// Log receives raft's warnings and errors (nil: discarded).
	Log io.Writer
	// Fast shortens raft's timeouts, for tests on loopback.
	Fast bool
	// SnapshotThreshold and TrailingLogs tune snapshots: one is taken
	// once that many commands came since the last, and that many are
	// kept in the log after it (0: 4096 and raft's 10240).
	SnapshotThreshold, TrailingLogs uint64
}

// Errors of the package.
var (
	// ErrNotLeader means the server is not the leader: a proposal goes to
	// the one NotLeaderError names.
	ErrNotLeader = errors.New("control: this server is not the leader")
	ErrClosed    = errors.New("control: the server is closed")
)

// NotLeaderError is ErrNotLeader with the leader this server knows of
// (empty when it knows none, as during an election).
type NotLeaderError struct{ Leader string }

func (e *NotLeaderError) Error() string {
	if e.Leader == "" {
		return "control: no leader is elected yet"
	}
	return "control: this server is not the leader; " + e.Leader + " is"
}

// Is matches ErrNotLeader.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// Server is one server of the control plane.
type Server struct {
	cfg   Config
	raft  *raft.Raft
	store *store
	layer *streamLayer
	trans *raft.NetworkTransport

	mu    sync.RWMutex
	state *controlstate.State
	// ready is the term in which the leader has applied everything
	// committed before it led (a barrier): reads wait for it.
	readyMu   sync.Mutex
	readyTerm uint64
}

// Start starts a server.
func Start(cfg Config) (*Server, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	level := hclog.Warn
	out := cfg.Log
	if out == nil {
		out, level = io.Discard, hclog.Off
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Output: out, Level: level})
	st, err := openStore(filepath.Join(cfg.Dir, "raft.db"))
	if err != nil {
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, logger)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	cache, err := raft.NewLogCache(512, st)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	s := &Server{cfg: cfg, store: st, state: controlstate.New()}
	s.layer = &streamLayer{accept: make(chan net.Conn), closed: make(chan struct{}), dial: cfg.Dial, addr: addr(cfg.Addr)}
	// The timeout bounds each RPC's I/O: a server killed without closing
	// its connections holds the leader's stream to it that long.
	timeout := 5 * time.Second
	if cfg.Fast {
		timeout = time.Second
	}
	s.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: s.layer, MaxPool: 3, Timeout: timeout, Logger: logger,
		ServerAddressProvider: resolver(cfg.Resolve),
	})
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = logger
	rc.SnapshotThreshold = 4096
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	if cfg.Fast {
		rc.HeartbeatTimeout = 300 * time.Millisecond
		rc.ElectionTimeout = 300 * time.Millisecond
		rc.LeaderLeaseTimeout = 150 * time.Millisecond
	}
	if cfg.Bootstrap {
		has, err := raft.HasExistingState(cache, st, snaps)
		if err != nil {
			_ = st.Close()
			return nil, err
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(cfg.NodeID)}}}
			if err := raft.BootstrapCluster(rc, cache, st, snaps, s.trans, conf); err != nil {
				_ = st.Close()
				return nil, fmt.Errorf("control: bootstrap: %w", err)
			}
		}
	}
	s.raft, err = raft.NewRaft(rc, (*fsm)(s), cache, st, snaps, s.trans)
	if err != nil {
		_ = s.trans.Close()
		_ = st.Close()
		return nil, fmt.Errorf("control: start raft: %w", err)
	}
	return s, nil
}

// Accept takes a raft stream that another server opened.
func (s *Server) Accept(c net.Conn) {
	select {
	case s.layer.accept <- c:
	case <-s.layer.closed:
		_ = c.Close()
	}
}

// Apply proposes a command and waits until it is applied: its error is
// Apply's (controlstate's errors for a command that does not fit the
// state). On a server that is not the leader it fails with a
// *NotLeaderError.
func (s *Server) Apply(c controlstate.Command, timeout time.Duration) error {
	b, err := controlstate.EncodeCommand(c)
	if err != nil {
		return err
	}
	f := s.raft.Apply(b, timeout)
	if err := f.Error(); err != nil {
		return s.leaderErr(err)
	}
	if err, _ := f.Response().(error); err != nil {
		return err
	}
	return nil
}

func (s *Server) leaderErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		_, id := s.raft.LeaderWithID()
		return &NotLeaderError{Leader: string(id)}
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	}
	return fmt.Errorf("control: %w", err)
}

// Read calls f with the state, as this leader has applied it: on a server
// that is not the leader it fails with a *NotLeaderError. A new leader
// first applies all that was committed before it led.
func (s *Server) Read(timeout time.Duration, f func(*controlstate.State)) error {
	if s.raft.State() != raft.Leader {
		_, id := s.raft.LeaderWithID()
		return &NotLeaderError{Leader: string(id)}
	}
	term := s.raft.CurrentTerm()
	s.readyMu.Lock()
	ready := s.readyTerm == term
	s.readyMu.Unlock()
	if !ready {
		if err := s.raft.Barrier(timeout).Error(); err != nil {
			return s.leaderErr(err)
		}
		s.readyMu.Lock()
		s.readyTerm = term
		s.readyMu.Unlock()
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	f(s.state)
	return nil
}

// Leader returns the leader's node ID ("" when none is known).
func (s *Server) Leader() string {
	_, id := s.raft.LeaderWithID()
	return string(id)
}

// IsLeader reports whether this server leads.
func (s *Server) IsLeader() bool { return s.raft.State() == raft.Leader }

// LeaderCh tells of this server gaining (true) and losing leadership.
func (s *Server) LeaderCh() <-chan bool { return s.raft.LeaderCh() }

// Voters returns the node IDs of the raft configuration's servers.
func (s *Server) Voters() ([]string, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []string
	for _, sv := range f.Configuration().Servers {
		out = append(out, string(sv.ID))
	}
	return out, nil
}

// AddVoter adds a server (by node ID), on the leader.
func (s *Server) AddVoter(nodeID string) error {
	return s.leaderErr(s.raft.AddVoter(raft.ServerID(nodeID), raft.ServerAddress(nodeID), 0, 10*time.Second).Error())
}

// RemoveServer removes a server that left, on the leader.
func (s *Server) RemoveServer(nodeID string) error {
	return s.leaderErr(s.raft.RemoveServer(raft.ServerID(nodeID), 0, 10*time.Second).Error())
}

// AppliedIndex is the index of the last command applied to this server's
// state, and CommitIndex the last it knows to be committed.
func (s *Server) AppliedIndex() uint64 { return s.raft.AppliedIndex() }
func (s *Server) CommitIndex() uint64  { return s.raft.CommitIndex() }

// Snapshot takes a snapshot now and compacts the log behind it.
func (s *Server) Snapshot() error { return s.leaderErr(s.raft.Snapshot().Error()) }

// Stats are raft's own figures, for operators.
func (s *Server) Stats() map[string]string { return s.raft.Stats() }

// Close stops the server (the others see it fail).
func (s *Server) Close() error {
	err := s.raft.Shutdown().Error()
	s.layer.close()
	if cerr := s.trans.Close(); err == nil {
		err = cerr
	}
	if cerr := s.store.Close(); err == nil {
		err = cerr
	}
	return err
}
