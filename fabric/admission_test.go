//go:build linux

package fabric

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/membership"
	"github.com/wasmfabric/fabric/internal/sandbox"
	"github.com/wasmfabric/fabric/internal/secrets"
	"github.com/wasmfabric/fabric/internal/testrig"
	"github.com/wasmfabric/fabric/internal/transport"
)

// joinConfig is a one-CPU agent that joins with token (and whatever the
// join's answer names).
func joinConfig(t *testing.T, token string) AgentConfig {
	return AgentConfig{DataDir: t.TempDir(), GossipAddr: "127.0.0.1:0", QUICAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Token: token, Timing: membership.Fast,
		Node: Config{NumCPUs: 1, ObjectStoreMemory: 64 << 20, WorkerCommand: []string{testrig.Fabric(t), "worker"}, Stdout: io.Discard, Stderr: io.Discard}}
}

// joinedAgent starts an agent that joins a's cluster with a join token,
// closed when the test ends.
func joinedAgent(t *testing.T, a *Agent) *Agent {
	t.Helper()
	b, err := StartAgent(joinConfig(t, joinToken(t, a)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// TestJoinTokens: a join token admits one node, once, which gets a
// certificate that names it and no CA key, and finds the cluster from
// the join's answer alone; a used, expired or deleted token is refused;
// a server token makes a server, which holds the CA key.
func TestJoinTokens(t *testing.T) {
	a := startAgent(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tok := joinToken(t, a)
	b, err := StartAgent(joinConfig(t, tok))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitFor(t, 15*time.Second, "b is a member", func() bool { return len(a.Members().Members()) == 2 && len(b.Members().Members()) == 2 })
	if b.cluster.CanSign() || b.certificate().Leaf.Subject.CommonName != b.ID || secrets.IsServer(b.certificate().Leaf) {
		t.Fatalf("b: can sign %v, certificate of %q, server %v", b.cluster.CanSign(), b.certificate().Leaf.Subject.CommonName, secrets.IsServer(b.certificate().Leaf))
	}
	if _, err := os.Stat(filepath.Join(b.cfg.DataDir, "cluster", "ca-key.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("b keeps a CA key: %v", err)
	}
	if _, err := StartAgent(joinConfig(t, tok)); !errors.Is(err, ErrJoinRefused) || !strings.Contains(err.Error(), "used already") {
		t.Fatalf("a used join token: %v, want ErrJoinRefused", err)
	}
	short := joinTokenWith(t, a, JoinTokenOptions{TTL: time.Second})
	time.Sleep(1100 * time.Millisecond)
	if _, err := StartAgent(joinConfig(t, short)); !errors.Is(err, ErrJoinRefused) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("an expired join token: %v, want ErrJoinRefused", err)
	}
	deleted, info, err := a.CreateJoinToken(ctx, JoinTokenOptions{Note: "to delete"})
	if err != nil {
		t.Fatal(err)
	}
	admin := a.Client(a.APIToken())
	if err := admin.DeleteJoinToken(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := StartAgent(joinConfig(t, deleted)); !errors.Is(err, ErrJoinRefused) {
		t.Fatalf("a deleted join token: %v, want ErrJoinRefused", err)
	}
	list, err := admin.JoinTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]int{}
	for _, j := range list {
		states[j.State]++
		if j.State == "used" && j.UsedBy != b.ID {
			t.Errorf("used by %q, want %s", j.UsedBy, b.ID)
		}
	}
	if states["used"] != 1 || states["expired"] != 1 {
		t.Errorf("join tokens by state: %v", states)
	}
	s, err := StartAgent(joinConfig(t, joinTokenWith(t, a, JoinTokenOptions{Server: true})))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.cluster.CanSign() || !secrets.IsServer(s.certificate().Leaf) || s.ctl == nil {
		t.Fatalf("a server's join: can sign %v, server certificate %v, control plane %v", s.cluster.CanSign(), secrets.IsServer(s.certificate().Leaf), s.ctl != nil)
	}
	waitFor(t, 30*time.Second, "s is a voter", func() bool {
		v, err := a.ctl.Voters()
		return err == nil && len(v) == 2
	})
	nodes, err := admin.AdmittedNodes(ctx)
	if err != nil || len(nodes) != 3 {
		t.Fatalf("admitted nodes: %+v, %v", nodes, err)
	}
}

// TestNodeRevoked: a revoked node's handshakes are refused by every
// member, what it had open is closed, its certificate is not renewed,
// and it is gone from the scheduler's view; its ID is never admitted
// again.
func TestNodeRevoked(t *testing.T) {
	a := startAgent(t, "")
	b := joinedAgent(t, a)
	c := joinedAgent(t, a)
	waitFor(t, 15*time.Second, "three members", func() bool { return a.node.NodeCount() == 3 && c.node.NodeCount() == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ping := func(from, to *Agent) error {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		defer ccancel()
		_, _, err := from.quic.Call(cctx, to.quic.Addr(), msgPing, nil)
		return err
	}
	if err := ping(b, c); err != nil {
		t.Fatal(err)
	}
	admin := a.Client(a.APIToken())
	if err := admin.RevokeNode(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "c refuses b", func() bool { return ping(b, c) != nil && ping(b, a) != nil && ping(c, b) != nil })
	waitFor(t, 15*time.Second, "b is gone from a's and c's nodes", func() bool { return a.node.NodeCount() == 2 && c.node.NodeCount() == 2 })
	if err := b.renew(); err == nil {
		t.Fatal("a revoked node renewed its certificate")
	}
	if err := ping(c, a); err != nil {
		t.Fatalf("the others stopped talking: %v", err)
	}
	nodes, err := admin.AdmittedNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if (n.ID == b.ID) == n.Revoked.IsZero() {
			t.Errorf("node %s: revoked %v", n.ID, n.Revoked)
		}
	}
	err = a.propose(ctx, controlstate.Command{UseJoinToken: &controlstate.UseJoinToken{ID: "nope", Node: b.ID, Time: nowMillis()}})
	if err == nil {
		t.Fatal("a revoked ID was admitted again")
	}
}

// TestCertificateRenewal: a node renews its certificate before it
// expires, and keeps talking to the cluster past the first one's end.
func TestCertificateRenewal(t *testing.T) {
	cfg := joinConfig(t, "")
	cfg.CertTTL = 3 * time.Second
	a, err := StartAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := joinedAgent(t, a)
	first := b.certificate().Leaf.NotAfter
	if d := time.Until(first); d > 3*time.Second {
		t.Fatalf("b's certificate expires in %s, want 3s at most", d)
	}
	waitFor(t, 10*time.Second, "b renewed its certificate", func() bool { return b.certificate().Leaf.NotAfter.After(first) })
	time.Sleep(time.Until(first) + 500*time.Millisecond)
	b.quic.ClosePeer(a.ID) // a new handshake, with the renewed certificate
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := b.quic.Call(ctx, a.quic.Addr(), msgPing, nil); err != nil {
		t.Fatalf("after the first certificate's end: %v", err)
	}
	saved, err := secrets.LoadNode(filepath.Join(b.cfg.DataDir, "cluster"))
	if err != nil || !saved.Leaf.NotAfter.After(first) {
		t.Fatalf("the renewed certificate was not saved: %v", err)
	}
}

// TestPeerRules: every message type an agent takes has a rule, and each
// class of peer is refused what its rule does not give it: a join
// token's certificate may only ask to join, a member may not speak raft,
// a revoked node nothing.
func TestPeerRules(t *testing.T) {
	a := startAgent(t, "")
	for _, typ := range []transport.Type{msgPing, msgBatch, msgControl, msgJobStop, msgJobRun, msgModuleCopy, msgJobLogs, msgJoin, msgRenew, msgRaft,
		msgGossipKey, msgGossipKeys, transport.TypePull} {
		if _, ok := peerRules[typ]; !ok {
			t.Errorf("message type %d has no rule", typ)
		}
	}
	a.serverPeers.Store("srv", true)
	a.setRevoked([]string{"gone"})
	for typ, rule := range peerRules {
		for _, peer := range []string{secrets.JoinPrefix + "j1", "member", "srv", "gone", ""} {
			err := a.peerMay(peer, typ)
			want := peer != "gone" && peer != "" && (rule.from == joining) == strings.HasPrefix(peer, secrets.JoinPrefix) &&
				(rule.from != server || peer == "srv")
			if (err == nil) != want {
				t.Errorf("type %d (%s) from %q: %v, want allowed %v", typ, rule.why, peer, err, want)
			}
		}
	}
	if err := a.peerMay("member", 250); err == nil || !strings.Contains(err.Error(), "unknown message type") {
		t.Errorf("a type with no rule: %v", err)
	}
	// Over the network: a join token's certificate reaches the agent,
	// and every request but a join is refused.
	jt, err := secrets.ParseJoinToken(joinToken(t, a))
	if err != nil {
		t.Fatal(err)
	}
	ep, err := transport.Listen(transport.Config{Addr: "127.0.0.1:0", TLS: jt.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, typ := range []transport.Type{msgPing, msgBatch, msgControl, msgJobStop, msgRenew} {
		if _, _, err := ep.Call(ctx, a.quic.Addr(), typ, mustMarshal(controlRequest{Op: "tokens"})); !errors.Is(err, transport.ErrRemote) || !strings.Contains(err.Error(), "takes a member") {
			t.Errorf("type %d with a join token's certificate: %v", typ, err)
		}
	}
	var id [transport.IDSize]byte
	if _, err := ep.Pull(ctx, a.quic.Addr(), id, func(n int64) ([]byte, error) { return make([]byte, n), nil }, transport.PullOptions{}); err == nil {
		t.Error("a join token's certificate pulled an object")
	}
	_, b, err := ep.Call(ctx, a.quic.Addr(), msgJoin, mustMarshal(joinRequest{Node: "newnode", Request: []byte("garbage")}))
	if !errors.Is(err, transport.ErrRemote) || !strings.Contains(err.Error(), "certificate request") {
		t.Errorf("a join with a garbage request: %v %q", err, b)
	}
	// No stream at all without a certificate the CA signed and that has
	// not expired: a stranger's, an expired one.
	stranger, err := secrets.Create()
	if err != nil {
		t.Fatal(err)
	}
	strangerCert, err := stranger.NodeCertificate("stranger", []string{"127.0.0.1"}, true, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, req, err := secrets.NewRequest("expired", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	der, err := a.cluster.Sign(req, "expired", true, time.Minute, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	expired, err := secrets.Pair(der, key)
	if err != nil {
		t.Fatal(err)
	}
	for name, tlsConf := range map[string]*tls.Config{
		"a stranger's certificate": stranger.TLSConfig(strangerCert, secrets.TLSOptions{}),
		"an expired certificate":   a.cluster.TLSConfig(expired, secrets.TLSOptions{}),
	} {
		ep, err := transport.Listen(transport.Config{Addr: "127.0.0.1:0", TLS: tlsConf})
		if err != nil {
			t.Fatal(err)
		}
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		for _, typ := range []transport.Type{msgPing, msgJoin, msgControl} {
			if _, _, err := ep.Call(cctx, a.quic.Addr(), typ, nil); err == nil || errors.Is(err, transport.ErrRemote) {
				t.Errorf("%s, type %d: %v, want no connection", name, typ, err)
			}
		}
		ccancel()
		ep.Close()
	}
}

// TestControlAuthority: the leader allows a member that is not a server
// its own changes only, and a relayed token what the token allows; a
// member cannot make tenants, tokens or join tokens, read tokens, or act
// on another node's jobs, whatever it sends.
func TestControlAuthority(t *testing.T) {
	a := startAgent(t, "")
	b := joinedAgent(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := a.Client(a.APIToken())
	if _, err := admin.CreateTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	nt, err := admin.CreateToken(ctx, TokenRequest{Tenant: "acme", Role: "user"})
	if err != nil {
		t.Fatal(err)
	}
	hostile := guestBytes(t, "internal/testguests/hostile")
	if _, err := admin.SubmitDetached(ctx, hostile, []string{"ticks", "100000", "100"}, SubmitOptions{ID: "ops-job"}); err != nil {
		t.Fatal(err)
	}
	send := func(ctx context.Context, c controlstate.Command) error { return b.propose(ctx, c) }
	refused := []controlstate.Command{
		{CreateTenant: &controlstate.CreateTenant{Name: "evil", Time: 1}},
		{CreateToken: &controlstate.CreateToken{Token: controlstate.Token{ID: "evil", Role: controlstate.RoleAdmin, Hash: tokenHash("x"), Created: 1}}},
		{Stop: &controlstate.Stop{ID: "ops-job", Time: 1}},
		{End: &controlstate.End{ID: "ops-job", Attempt: 1, State: controlstate.Failed, Time: 1}},
		{Submit: &controlstate.Submit{ID: "evil-job", Digest: strings.Repeat("0", 64), Node: b.ID, Time: 1, Tenant: "acme"}},
		{CreateJoinToken: &controlstate.CreateJoinToken{Token: controlstate.JoinToken{ID: "evil", Created: 1, Expires: 2}}},
		{RevokeNode: &controlstate.RevokeNode{Node: a.ID, Time: 1}},
		{AdmitNode: &controlstate.AdmitNode{Node: "evil", Server: true, Time: 1}},
		{ForgetNode: &controlstate.ForgetNode{Node: a.ID}},
	}
	for _, c := range refused {
		if err := send(ctx, c); !errors.Is(err, ErrForbidden) {
			t.Errorf("member %s: %s: %v, want ErrForbidden", b.ID, commandName(c), err)
		}
		// A tenant's token relayed allows no more of these.
		if err := send(withCallerToken(ctx, nt.Token), c); !errors.Is(err, ErrForbidden) {
			t.Errorf("member %s with a tenant's token: %s: %v, want ErrForbidden", b.ID, commandName(c), err)
		}
	}
	for _, op := range []string{"tokens", "tenants", "join-tokens", "nodes"} {
		if _, err := b.control(ctx, controlRequest{Op: op}); !errors.Is(err, ErrForbidden) {
			t.Errorf("member reads %s: %v, want ErrForbidden", op, err)
		}
	}
	if _, err := b.lookupJob(ctx, "ops-job"); !errors.Is(err, ErrNoJob) {
		t.Errorf("member reads another node's job: %v, want ErrNoJob", err)
	}
	// What the relayed token allows, it allows: its own job, in its tenant.
	sub := controlstate.Submit{ID: "acme:job", Digest: strings.Repeat("0", 64), Node: b.ID, Time: 1, Tenant: "acme", Owner: nt.ID}
	if err := send(withCallerToken(ctx, nt.Token), controlstate.Command{Submit: &sub}); err != nil && !errors.Is(err, ErrNoModuleHere) {
		t.Errorf("a tenant's own submission, relayed: %v", err)
	}
	ans, err := b.control(ctx, controlRequest{Op: "revoked"})
	if err != nil || ans.Revoked != nil {
		t.Errorf("revoked: %v %v", ans.Revoked, err)
	}
	// A member names an actor in a tenant's namespace only showing the
	// grant of a job of the tenant's: one whose work it was sent.
	module := strings.Repeat("ab", 32)
	name := controlstate.Command{NameActor: &controlstate.NameActor{ActorName: controlstate.ActorName{Namespace: "prod", Name: "db", Job: "acme-j1",
		Actor: make([]byte, 20), Node: b.ID, Class: "DB", Time: 1, Tenant: "acme"}}}
	g, err := a.cluster.SignGrant("acme-j1", "acme", a.ID, module)
	if err != nil {
		t.Fatal(err)
	}
	og, err := a.cluster.SignGrant("ops-j1", "", a.ID, module)
	if err != nil {
		t.Fatal(err)
	}
	for what, proof := range map[string][]byte{
		"no grant":                      nil,
		"a forged grant":                encodeModuleProof("acme-j1", "acme", a.ID, module, []byte("forged")),
		"a grant shown for another job": encodeModuleProof("acme-j2", "acme", a.ID, module, g),
		"the operator's grant":          encodeModuleProof("ops-j1", "", a.ID, module, og),
	} {
		if err := b.proposeProved(ctx, name, proof); !errors.Is(err, ErrForbidden) {
			t.Errorf("member names an actor of tenant acme with %s: %v, want ErrForbidden", what, err)
		}
	}
	if err := b.proposeProved(ctx, name, encodeModuleProof("acme-j1", "acme", a.ID, module, g)); err != nil {
		t.Errorf("member names an actor of a job whose grant it holds: %v", err)
	}
}

// TestGossipKeyRotation: after a node is revoked, a rotation moves every
// other member to a new gossip key, saved for restarts, and the revoked
// node, which holds only the old one, can no longer join the gossip.
func TestGossipKeyRotation(t *testing.T) {
	a := startAgent(t, "")
	b := joinedAgent(t, a)
	c := joinedAgent(t, a)
	waitFor(t, 15*time.Second, "three members", func() bool { return a.node.NodeCount() == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.Client(a.APIToken()).RevokeNode(ctx, c.ID); err != nil { // through a member: the leader rotates
		t.Fatal(err)
	}
	out, err := b.Client(a.APIToken()).RotateGossipKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Nodes) != 2 || out.OldKeyKept {
		t.Fatalf("rotation: %+v", out)
	}
	for _, m := range []*Agent{a, b} {
		ks := m.members.Keys()
		if len(ks) != 1 || bytes.Equal(ks[0], c.members.Keys()[0]) {
			t.Fatalf("%s: %d keys after the rotation, or the old one", m.ID, len(ks))
		}
		saved, err := secrets.Load(filepath.Join(m.cfg.DataDir, "cluster"))
		if err != nil || !bytes.Equal(saved.GossipKey, ks[0]) || len(secrets.ExtraGossipKeys(filepath.Join(m.cfg.DataDir, "cluster"))) != 0 {
			t.Fatalf("%s: the new key was not saved: %v", m.ID, err)
		}
	}
	if _, err := c.members.Join(a.GossipAddr()); !errors.Is(err, membership.ErrNoJoin) {
		t.Fatalf("the revoked node joined the gossip after the rotation: %v", err)
	}
	waitFor(t, 15*time.Second, "a and b still gossip", func() bool {
		for _, m := range b.Members().Members() {
			if m.ID == a.ID {
				return m.Status == membership.Alive
			}
		}
		return false
	})

	// b is away during the next rotation; when it comes back, it takes
	// the new key from a server before it gossips, and is a member again.
	bcfg := b.cfg
	bcfg.GossipAddr, bcfg.QUICAddr = b.GossipAddr(), b.QUICAddr() // the same addresses, as a restarted machine has
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "a sees b gone", func() bool {
		m, ok := a.member(b.ID)
		return ok && m.Status != membership.Alive && m.Status != membership.Suspect
	})
	out, err = a.Client(a.APIToken()).RotateGossipKey(ctx)
	if err != nil || len(out.Nodes) != 1 || out.OldKeyKept {
		t.Fatalf("rotation while b is away: %+v %v", out, err)
	}
	b2, err := StartAgent(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if !bytes.Equal(b2.members.Keys()[0], a.members.Keys()[0]) {
		t.Fatal("b came back with the old gossip key")
	}
	waitFor(t, 30*time.Second, "b is a member again", func() bool {
		m, ok := a.member(b2.ID)
		return ok && m.Status == membership.Alive
	})
}

// TestModuleServedToItsWorkers: a node serves a module it holds only to
// a node that works with it (it sent it a job's work, it asked it to
// copy it, it showed a grant naming it) or to a server: a member that
// only knows the digest, or shows a forged grant or another module's, is
// refused.
func TestModuleServedToItsWorkers(t *testing.T) {
	a := startAgent(t, "")
	b, c := joinedAgent(t, a), joinedAgent(t, a)
	waitFor(t, 15*time.Second, "three members", func() bool { return b.node.NodeCount() == 3 && c.node.NodeCount() == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wasm := guestBytes(t, "examples/quickstart")
	digest := sandbox.Digest(wasm)
	m, err := c.Client(a.APIToken()).Upload(ctx, bytes.NewReader(wasm), "quickstart")
	if err != nil || m.Digest != digest {
		t.Fatalf("upload on c: %+v %v", m, err)
	}
	if err := b.PullModule(ctx, c.ID, digest, nil); err == nil {
		t.Fatal("b copied c's module knowing only its digest")
	}
	grant := func(module string) []byte {
		return b.grantFor(withCallerToken(ctx, a.APIToken()), "j1", "", b.ID, "", module)
	}
	other := strings.Repeat("ab", 32)
	for name, proof := range map[string][]byte{
		"a forged grant":              encodeModuleProof("j1", "", b.ID, digest, []byte("forged")),
		"another module's grant":      encodeModuleProof("j1", "", b.ID, other, grant(digest)),
		"a grant rooted at another":   encodeModuleProof("j1", "", c.ID, digest, grant(digest)),
		"a grant of another tenant's": encodeModuleProof("j1", "acme", b.ID, digest, grant(digest)),
	} {
		if err := b.PullModule(ctx, c.ID, digest, proof); err == nil {
			t.Errorf("b copied c's module with %s", name)
		}
	}
	if len(grant(digest)) == 0 {
		t.Fatal("the leader gave no grant for the module to the cluster's operator")
	}
	if err := b.PullModule(ctx, c.ID, digest, encodeModuleProof("j1", "", b.ID, digest, grant(digest))); err != nil {
		t.Fatalf("b, with a grant for the module: %v", err)
	}
	if err := a.PullModule(ctx, c.ID, digest, nil); err != nil {
		t.Fatalf("a server: %v", err)
	}
}
