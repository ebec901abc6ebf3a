package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/secrets"
	"github.com/wasmfabric/fabric/internal/transport"
)

const raftStream transport.Type = 50

const digest = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

// testCluster runs servers on real QUIC endpoints (mutual TLS), as agents do.
type testCluster struct {
	t       *testing.T
	secrets *secrets.Cluster
	mu      sync.Mutex
	addrs   map[string]string
	servers map[string]*Server
	eps     map[string]*transport.Endpoint
	dirs    map[string]string
}

func newTestCluster(t *testing.T) *testCluster {
	c, err := secrets.Create()
	if err != nil {
		t.Fatal(err)
	}
	tc := &testCluster{t: t, secrets: c, addrs: map[string]string{}, servers: map[string]*Server{},
		eps: map[string]*transport.Endpoint{}, dirs: map[string]string{}}
	t.Cleanup(func() {
		for id := range tc.servers {
			tc.stop(id)
		}
	})
	return tc
}

func (tc *testCluster) start(id string, bootstrap bool) *Server {
	return tc.startWith(id, Config{Bootstrap: bootstrap})
}

func (tc *testCluster) startWith(id string, cfg Config) *Server {
	tc.t.Helper()
	cert, err := tc.secrets.NodeCertificate(id, []string{"127.0.0.1"}, false, time.Hour)
	if err != nil {
		tc.t.Fatal(err)
	}
	var srv *Server
	ready := make(chan struct{})
	ep, err := transport.Listen(transport.Config{Addr: "127.0.0.1:0", TLS: tc.secrets.TLSConfig(cert, secrets.TLSOptions{}),
		Streams: map[transport.Type]transport.StreamHandler{raftStream: func(_ string, _ []byte, c net.Conn) {
			<-ready
			srv.Accept(c)
		}}})
	if err != nil {
		tc.t.Fatal(err)
	}
	if tc.dirs[id] == "" {
		tc.dirs[id] = tc.t.TempDir()
	}
	tc.mu.Lock()
	tc.addrs[id] = ep.Addr()
	tc.mu.Unlock()
	cfg.NodeID, cfg.Dir, cfg.Addr, cfg.Fast = id, tc.dirs[id], ep.Addr(), true
	cfg.Resolve = func(n string) (string, error) {
		tc.mu.Lock()
		defer tc.mu.Unlock()
		if a, ok := tc.addrs[n]; ok {
			return a, nil
		}
		return "", fmt.Errorf("no server %s", n)
	}
	cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
		return ep.OpenStream(ctx, addr, raftStream, nil)
	}
	srv, err = Start(cfg)
	if err != nil {
		tc.t.Fatal(err)
	}
	close(ready)
	tc.servers[id], tc.eps[id] = srv, ep
	return srv
}

func (tc *testCluster) stop(id string) {
	if s := tc.servers[id]; s != nil {
		_ = s.Close()
		_ = tc.eps[id].Close()
		delete(tc.servers, id)
	}
}

// leader waits for one of the running servers to lead and be readable.
func (tc *testCluster) leader() *Server {
	tc.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range tc.servers {
			if s.IsLeader() && s.Read(time.Second, func(*controlstate.State) {}) == nil {
				return s
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tc.t.Fatal("no leader")
	return nil
}

func submit(id string) controlstate.Command {
	return controlstate.Command{Submit: &controlstate.Submit{ID: id, Digest: digest, Node: "n", Time: 1}}
}

// TestReplication: three servers over QUIC; what the leader acknowledged
// survives the leader's loss, a follower refuses proposals naming the
// leader, a restarted server catches up from its own disk and its peers.
func TestReplication(t *testing.T) {
	tc := newTestCluster(t)
	s1 := tc.start("s1", true)
	tc.start("s2", false)
	tc.start("s3", false)
	if l := tc.leader(); l != s1 {
		t.Fatalf("the bootstrapped server does not lead")
	}
	for _, id := range []string{"s2", "s3"} {
		if err := s1.AddVoter(id); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		if err := s1.Apply(submit(fmt.Sprintf("j%d", i)), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := s1.Apply(submit("j0"), 5*time.Second); !errors.Is(err, controlstate.ErrJobExists) {
		t.Fatalf("a duplicate submission: %v", err)
	}
	// A follower that the leader has not reached yet knows no leader
	// (the 20 commits needed only s1 and s3): wait until s2 has heard.
	for deadline := time.Now().Add(10 * time.Second); tc.servers["s2"].Leader() != "s1" && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	var nl *NotLeaderError
	if err := tc.servers["s2"].Apply(submit("x"), time.Second); !errors.As(err, &nl) || nl.Leader != "s1" {
		t.Fatalf("a follower's apply: %v", err)
	}
	tc.stop("s1")
	l := tc.leader()
	var n int
	if err := l.Read(time.Second, func(s *controlstate.State) { n = len(s.Jobs(nil)) }); err != nil || n != 20 {
		t.Fatalf("the new leader reads %d jobs, %v", n, err)
	}
	if err := l.Apply(submit("after"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// s1 comes back on another port, from its data directory.
	s1 = tc.start("s1", true)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ok bool
		s1.mu.RLock()
		_, ok = s1.state.Job("after")
		s1.mu.RUnlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the restarted server did not catch up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	voters, err := tc.leader().Voters()
	if err != nil || len(voters) != 3 {
		t.Fatalf("voters %v, %v", voters, err)
	}
}

// jobCount reads a server's own state, leader or not.
func jobCount(s *Server) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.state.Jobs(nil))
}

// TestSnapshots: after a snapshot compacts the log, a server that joins
// later catches up from the snapshot (raft's InstallSnapshot over QUIC),
// and a server restarted on its directory restores it with the commands
// after it.
func TestSnapshots(t *testing.T) {
	tc := newTestCluster(t)
	s1 := tc.startWith("s1", Config{Bootstrap: true, SnapshotThreshold: 1 << 20, TrailingLogs: 2})
	tc.leader()
	for i := range 50 {
		if err := s1.Apply(submit(fmt.Sprintf("j%d", i)), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := s1.Snapshot(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s1.Apply(submit(fmt.Sprintf("after%d", i)), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	first, _ := s1.store.FirstIndex()
	if first <= 2 {
		t.Fatalf("the log was not compacted: its first index is %d", first)
	}
	s2 := tc.startWith("s2", Config{TrailingLogs: 2})
	if err := s1.AddVoter("s2"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for jobCount(s2) != 53 {
		if time.Now().After(deadline) {
			t.Fatalf("the new server has %d jobs, not 53", jobCount(s2))
		}
		time.Sleep(20 * time.Millisecond)
	}
	tc.stop("s1")
	tc.stop("s2")
	s1 = tc.startWith("s1", Config{Bootstrap: true})
	// At its start the server has restored the snapshot; the commands
	// after it apply once a leader commits them again.
	if n := jobCount(s1); n != 50 {
		t.Fatalf("the restarted server restored %d jobs from its snapshot, not 50", n)
	}
	tc.startWith("s2", Config{})
	deadline = time.Now().Add(20 * time.Second)
	for jobCount(s1) != 53 {
		if time.Now().After(deadline) {
			t.Fatalf("the restarted server has %d jobs, not 53", jobCount(s1))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
