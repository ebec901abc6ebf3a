//go:build linux

package fabric

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/membership"
	"github.com/wasmfabric/fabric/internal/secrets"
	"github.com/wasmfabric/fabric/internal/transport"
	"github.com/wasmfabric/fabric/internal/wire"
)

// Admission: how a node gets into the cluster and stays in it.
//
// The first agent makes the cluster: the gossip key, the certificate
// authority (CA) and its own server certificate, and the cluster's admin
// token, whose secret it writes to its data directory. Every other node
// joins with a join token (fabric join-token create), which holds a
// short-lived certificate named for the token: the node makes its own key
// and sends a certificate request under that certificate to a server,
// which spends the token in the control state (once, before it expires,
// for a node ID never admitted before) and signs the request. The CA's
// key stays on the servers; a server join token makes a server, which
// receives it. Certificates expire and are renewed by a server while the
// node is not revoked; a revoked node's handshakes are refused by every
// member.

// Messages of admission.
const (
	// msgJoin asks a server to admit the node: body a joinRequest, from a
	// peer named by a join token's certificate; answer a joinAnswer.
	msgJoin transport.Type = 26
	// msgRenew asks a server to sign a new certificate for the node
	// itself: body a certificate request; answer msgRenew, the
	// certificate (DER).
	msgRenew transport.Type = 27
)

// Errors of admission.
var (
	// ErrJoinRefused means a server refused to admit the node: the join
	// token was used, expired, deleted or of another cluster.
	ErrJoinRefused = errors.New("fabric: the cluster refused to admit this node")
	// ErrRevoked means the node was revoked: the cluster no longer talks
	// to it.
	ErrRevoked = errors.New("fabric: the node was revoked")
)

// joinRequest is a new node's request to be admitted.
type joinRequest struct {
	Node    string `cbor:"1,keyasint"`
	Request []byte `cbor:"2,keyasint"` // a certificate request (DER)
}

// joinAnswer admits a node.
type joinAnswer struct {
	Cert    []byte   `cbor:"1,keyasint"` // the node's certificate (DER)
	Bundle  string   `cbor:"2,keyasint"` // the cluster's secrets, the CA key only for a server
	Members []string `cbor:"3,keyasint,omitempty"`
	Servers []string `cbor:"4,keyasint,omitempty"` // node IDs
}

// identity is what an agent starts with: the cluster's secrets and its
// own certificate.
type identity struct {
	cluster *secrets.Cluster
	cert    tls.Certificate
	created bool     // the agent made the cluster now
	members []string // gossip addresses to join, from the join's answer
	servers []string // the servers' QUIC addresses, as last known
}

// File names in the data directory's cluster directory.
const (
	adminTokenFile = "admin.token" // the admin token's secret, on the agent that made the cluster
	serversFile    = "servers"     // the servers' QUIC addresses, as last known, a line each
)

// loadIdentity loads the agent's secrets and certificate, makes a new
// cluster, or joins one with cfg.Token.
func loadIdentity(ctx context.Context, cfg AgentConfig, id string, hosts []string) (*identity, error) {
	dir := filepath.Join(cfg.DataDir, "cluster")
	saved, err := secrets.Load(dir)
	if err != nil && !errors.Is(err, secrets.ErrNotFound) {
		return nil, err
	}
	var jt *secrets.JoinToken
	if cfg.Token != "" {
		if jt, err = secrets.ParseJoinToken(cfg.Token); err != nil {
			return nil, fmt.Errorf("fabric: the join token: %w (make one with fabric join-token create)", err)
		}
	}
	ttl := cfg.certTTL()
	switch {
	case saved != nil:
		if jt != nil && !jt.CA.Equal(saved.CA) {
			return nil, fmt.Errorf("%w (%s); use another --data-dir", ErrOtherCluster, cfg.DataDir)
		}
		idn := &identity{cluster: saved, servers: readLines(filepath.Join(dir, serversFile))}
		if saved.CanSign() {
			// A server issues its own certificate at each start.
			server := true
			if idn.cert, err = saved.NodeCertificate(id, hosts, server, ttl); err != nil {
				return nil, err
			}
			return idn, secrets.SaveNode(dir, idn.cert)
		}
		if idn.cert, err = secrets.LoadNode(dir); err != nil {
			return nil, fmt.Errorf("fabric: the node's certificate: %w (join again with a new join token and an empty --data-dir)", err)
		}
		if time.Now().After(idn.cert.Leaf.NotAfter) {
			return nil, fmt.Errorf("fabric: the node's certificate expired at %s, while the node was away; join again with a new join token and an empty --data-dir", idn.cert.Leaf.NotAfter.Format(time.RFC3339))
		}
		return idn, nil
	case jt != nil:
		idn, err := joinCluster(ctx, cfg, jt, id, hosts)
		if err != nil {
			return nil, err
		}
		if err := idn.cluster.Save(dir); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, serversFile), []byte(strings.Join(jt.Servers, "\n")+"\n"), 0o600); err != nil {
			return nil, err
		}
		return idn, secrets.SaveNode(dir, idn.cert)
	case len(cfg.Join) > 0:
		return nil, errors.New("fabric: joining a cluster needs a join token (--token-file, or FABRIC_JOIN_TOKEN); make one on a member with: fabric join-token create")
	}
	c, err := secrets.Create()
	if err != nil {
		return nil, err
	}
	if err := c.Save(dir); err != nil {
		return nil, err
	}
	cert, err := c.NodeCertificate(id, hosts, true, ttl)
	if err != nil {
		return nil, err
	}
	_, admin := newTokenSecret()
	if err := os.WriteFile(filepath.Join(dir, adminTokenFile), []byte(admin+"\n"), 0o600); err != nil {
		return nil, err
	}
	return &identity{cluster: c, cert: cert, created: true, servers: []string{id}}, secrets.SaveNode(dir, cert)
}

func readLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

func (cfg AgentConfig) certTTL() time.Duration {
	if cfg.CertTTL > 0 {
		return cfg.CertTTL
	}
	return DefaultCertTTL
}

// joinTries bounds how long a joining node keeps asking the token's
// servers when none answers.
const joinTries = 60 * time.Second

// joinCluster asks the join token's servers to admit the node.
func joinCluster(ctx context.Context, cfg AgentConfig, jt *secrets.JoinToken, id string, hosts []string) (*identity, error) {
	if len(jt.Servers) == 0 {
		return nil, fmt.Errorf("%w: the join token names no server to ask", ErrJoinRefused)
	}
	if time.Now().After(jt.Expires()) {
		return nil, fmt.Errorf("%w: the join token expired at %s; make another with fabric join-token create", ErrJoinRefused, jt.Expires().Format(time.RFC3339))
	}
	key, req, err := secrets.NewRequest(id, hosts)
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(cfg.QUICAddr)
	if err != nil {
		return nil, fmt.Errorf("fabric: QUIC address %q: %w", cfg.QUICAddr, err)
	}
	ep, err := transport.Listen(transport.Config{Addr: net.JoinHostPort(host, "0"), TLS: jt.TLSConfig()})
	if err != nil {
		return nil, err
	}
	defer ep.Close()
	body := mustMarshal(joinRequest{Node: id, Request: req})
	ctx, cancel := context.WithTimeout(ctx, joinTries)
	defer cancel()
	var last error
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		for _, addr := range jt.Servers {
			cctx, ccancel := context.WithTimeout(ctx, controlHold)
			_, b, err := ep.Call(cctx, addr, msgJoin, body)
			ccancel()
			if errors.Is(err, transport.ErrRemote) {
				return nil, fmt.Errorf("%w: %v", ErrJoinRefused, strings.TrimPrefix(err.Error(), transport.ErrRemote.Error()+": "))
			}
			if err != nil {
				last = fmt.Errorf("server %s: %w", addr, err)
				if cfg.Log != nil {
					fmt.Fprintf(cfg.Log, "fabric agent: join failed: %v; retrying\n", last)
				}
				continue
			}
			return admitted(jt, b, key, id)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("fabric: no server of the join token answered (%s): %w", strings.Join(jt.Servers, ", "), last)
		case <-time.After(wait):
		}
	}
}

// admitted checks a join's answer and returns the identity it gives.
func admitted(jt *secrets.JoinToken, b []byte, key *ecdsa.PrivateKey, id string) (*identity, error) {
	var ans joinAnswer
	if err := wire.Unmarshal(b, &ans); err != nil {
		return nil, fmt.Errorf("fabric: a malformed answer to the join: %w", err)
	}
	c, err := secrets.ParseBundle(ans.Bundle)
	if err != nil {
		return nil, err
	}
	if !c.CA.Equal(jt.CA) {
		return nil, errors.New("fabric: the server answered with another cluster's CA")
	}
	cert, err := secrets.Pair(ans.Cert, key)
	if err != nil {
		return nil, err
	}
	if err := cert.Leaf.CheckSignatureFrom(c.CA); err != nil || cert.Leaf.Subject.CommonName != id {
		return nil, fmt.Errorf("fabric: the server answered with a certificate not for node %s", id)
	}
	return &identity{cluster: c, cert: cert, members: ans.Members, servers: ans.Servers}, nil
}

// handleJoin admits a node that shows a join token's certificate.
func (a *Agent) handleJoin(ctx context.Context, peer string, body []byte) ([]byte, error) {
	if !a.cluster.CanSign() {
		return nil, fmt.Errorf("node %s is not a server; ask one of the join token's servers", a.ID)
	}
	var req joinRequest
	if err := wire.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("malformed join request: %w", err)
	}
	if !controlstate.ValidNodeID(req.Node) {
		return nil, fmt.Errorf("node ID %q: 1 to 128 letters, digits, '-', '_' or '.'", req.Node)
	}
	tokenID := strings.TrimPrefix(peer, secrets.JoinPrefix)
	if err := a.propose(ctx, controlstate.Command{UseJoinToken: &controlstate.UseJoinToken{ID: tokenID, Node: req.Node, Time: nowMillis()}}); err != nil {
		return nil, err
	}
	rec, err := a.nodeRecord(ctx, req.Node)
	if err != nil {
		return nil, err
	}
	der, err := a.cluster.Sign(req.Request, req.Node, rec.Server, a.cfg.certTTL(), time.Now())
	if err != nil {
		return nil, err
	}
	ans := joinAnswer{Cert: der, Bundle: a.cluster.WithoutCAKey().Bundle(), Servers: append(a.servers(), a.ID)}
	if rec.Server {
		ans.Bundle = a.cluster.Bundle()
	}
	a.tableMu.RLock()
	for id, m := range a.table {
		if m.Status == membership.Alive && m.Gossip != "" && id != a.ID {
			ans.Members = append(ans.Members, m.Gossip)
		}
	}
	a.tableMu.RUnlock()
	slices.Sort(ans.Members)
	ans.Members = append([]string{a.members.Local().Gossip}, ans.Members[:min(len(ans.Members), 15)]...)
	a.logf("fabric agent: admitted node %s (join token %s, server %v)", req.Node, tokenID, rec.Server)
	return wire.Marshal(ans)
}

// handleRenew signs a new certificate for a member that is not revoked.
func (a *Agent) handleRenew(ctx context.Context, peer string, body []byte) ([]byte, error) {
	if !a.cluster.CanSign() {
		return nil, fmt.Errorf("node %s is not a server", a.ID)
	}
	rec, err := a.nodeRecord(ctx, peer)
	if err != nil {
		return nil, err
	}
	if rec.Revoked != 0 {
		return nil, fmt.Errorf("%w: %s", ErrRevoked, peer)
	}
	return a.cluster.Sign(body, peer, rec.Server, a.cfg.certTTL(), time.Now())
}

// nodeRecord reads a node's admission record.
func (a *Agent) nodeRecord(ctx context.Context, id string) (controlstate.NodeRecord, error) {
	ans, err := a.control(ctx, controlRequest{Op: "node", ID: id})
	if err != nil {
		return controlstate.NodeRecord{}, err
	}
	if len(ans.Nodes) != 1 {
		return controlstate.NodeRecord{}, fmt.Errorf("%w: %q", controlstate.ErrNoNode, id)
	}
	return ans.Nodes[0], nil
}

// certificate is the certificate the agent presents now.
func (a *Agent) certificate() *tls.Certificate { return a.cert.Load() }

// refusePeer is asked of every peer whose certificate the CA signed: it
// refuses revoked nodes, and notes which peers showed a server's
// certificate.
func (a *Agent) refusePeer(cert *x509.Certificate) error {
	name := cert.Subject.CommonName
	if a.isRevoked(name) {
		return fmt.Errorf("%w: %s", ErrRevoked, name)
	}
	if secrets.IsServer(cert) {
		a.serverPeers.Store(name, true)
	}
	return nil
}

// isRevoked reports whether a node was revoked, as the agent last heard.
func (a *Agent) isRevoked(id string) bool {
	m := a.revoked.Load()
	return m != nil && (*m)[id]
}

// isServerPeer reports whether a peer showed a server's certificate.
func (a *Agent) isServerPeer(id string) bool {
	_, ok := a.serverPeers.Load(id)
	return ok
}

// revocationPoll is how often an agent reads the revoked nodes.
func (a *Agent) revocationPoll() time.Duration {
	if a.fastTiming() {
		return 500 * time.Millisecond
	}
	return 5 * time.Second
}

// watchRevocations keeps the revoked nodes the agent knows current, and
// ends what it has open with a node once revoked.
func (a *Agent) watchRevocations() {
	defer a.wg.Done()
	t := time.NewTicker(a.revocationPoll())
	defer t.Stop()
	for {
		select {
		case <-a.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(a.agentCtx, controlTimeout)
		ans, err := a.control(ctx, controlRequest{Op: "revoked"})
		cancel()
		if err != nil {
			continue
		}
		a.setRevoked(ans.Revoked)
	}
}

// setRevoked records the revoked nodes and cuts off the new ones.
func (a *Agent) setRevoked(ids []string) {
	m := make(map[string]bool, len(ids))
	var fresh []string
	for _, id := range ids {
		m[id] = true
		if !a.isRevoked(id) {
			fresh = append(fresh, id)
		}
	}
	a.revoked.Store(&m)
	for _, id := range fresh {
		if id == a.ID {
			a.warnf("fabric agent: this node was revoked: the cluster no longer talks to it")
			continue
		}
		a.logf("fabric agent: node %s was revoked; closing its connections", id)
		a.quic.ClosePeer(id)
		a.link.Forget(id)
		a.dropMember(id)
	}
}

// renewLoop renews the agent's certificate when a third of its life is
// left.
func (a *Agent) renewLoop() {
	defer a.wg.Done()
	for {
		cert := a.certificate()
		life := cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore)
		at := cert.Leaf.NotAfter.Add(-life / 3)
		wait := max(time.Until(at), time.Second)
		select {
		case <-a.done:
			return
		case <-time.After(wait):
		}
		if err := a.renew(); err != nil {
			a.warnf("fabric agent: renewing the node's certificate (it expires at %s): %v", cert.Leaf.NotAfter.Format(time.RFC3339), err)
			select {
			case <-a.done:
				return
			case <-time.After(min(life/30+time.Second, time.Minute)):
			}
		}
	}
}

// renew gets the agent a new certificate: from itself on a server, from
// a server elsewhere.
func (a *Agent) renew() error {
	hosts := a.certHosts()
	if a.cluster.CanSign() {
		cert, err := a.cluster.NodeCertificate(a.ID, hosts, true, a.cfg.certTTL())
		if err != nil {
			return err
		}
		a.cert.Store(&cert)
		return secrets.SaveNode(filepath.Join(a.cfg.DataDir, "cluster"), cert)
	}
	key, req, err := secrets.NewRequest(a.ID, hosts)
	if err != nil {
		return err
	}
	var last error = ErrNoLeader
	for _, s := range a.servers() {
		addr, err := a.addrOf(s)
		if err != nil {
			last = err
			continue
		}
		ctx, cancel := context.WithTimeout(a.agentCtx, controlTimeout)
		_, der, err := a.quic.Call(ctx, addr, msgRenew, req)
		cancel()
		if err != nil {
			last = err
			continue
		}
		cert, err := secrets.Pair(der, key)
		if err != nil {
			return err
		}
		if cert.Leaf.Subject.CommonName != a.ID || cert.Leaf.CheckSignatureFrom(a.cluster.CA) != nil {
			return fmt.Errorf("server %s answered with a certificate not for this node", s)
		}
		a.cert.Store(&cert)
		a.logf("fabric agent: renewed the node's certificate; it expires at %s", cert.Leaf.NotAfter.Format(time.RFC3339))
		return secrets.SaveNode(filepath.Join(a.cfg.DataDir, "cluster"), cert)
	}
	return last
}

// certHosts are the hosts the agent's certificate names.
func (a *Agent) certHosts() []string {
	hosts := []string{"127.0.0.1", "::1"}
	if a.cfg.AdvertiseHost != "" {
		hosts = append(hosts, a.cfg.AdvertiseHost)
	}
	return hosts
}

// JoinTokenOptions describe a join token to make.
type JoinTokenOptions struct {
	// TTL is how long the token works (0: DefaultJoinTokenTTL; at most
	// MaxJoinTokenTTL).
	TTL time.Duration
	// Server makes the node that joins with it a server.
	Server bool
	// Note says what the token is for, in listings.
	Note string
}

// CreateJoinToken makes a join token on this agent, which must be a
// server, and records it in the control state. The token is the secret:
// it is returned once and never stored.
func (a *Agent) CreateJoinToken(ctx context.Context, o JoinTokenOptions) (string, JoinTokenInfo, error) {
	if !a.cluster.CanSign() {
		return "", JoinTokenInfo{}, fmt.Errorf("fabric: node %s is not a server: it cannot sign certificates", a.ID)
	}
	ttl := o.TTL
	switch {
	case ttl == 0:
		ttl = DefaultJoinTokenTTL
	case ttl < 0 || ttl > MaxJoinTokenTTL:
		return "", JoinTokenInfo{}, fmt.Errorf("%w: a join token's TTL is between 1s and %s", ErrBadRequest, MaxJoinTokenTTL)
	}
	var raw [6]byte
	_, _ = rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	now := time.Now()
	var servers []string
	for _, s := range append([]string{a.ID}, a.servers()...) {
		if m, ok := a.member(s); ok && m.QUIC != "" {
			servers = append(servers, m.QUIC)
		} else if s == a.ID {
			servers = append(servers, a.info.QUIC)
		}
	}
	tok, err := a.cluster.NewJoinToken(id, now.Add(ttl), servers)
	if err != nil {
		return "", JoinTokenInfo{}, err
	}
	rec := controlstate.JoinToken{ID: id, Created: now.UnixMilli(), Expires: now.Add(ttl).UnixMilli(), Server: o.Server, Note: o.Note}
	if err := a.propose(ctx, controlstate.Command{CreateJoinToken: &controlstate.CreateJoinToken{Token: rec}}); err != nil {
		return "", JoinTokenInfo{}, err
	}
	return tok, joinTokenInfo(rec, now), nil
}

// joinTokenInfo is a join token's record as the API shows it.
func joinTokenInfo(t controlstate.JoinToken, now time.Time) JoinTokenInfo {
	ji := JoinTokenInfo{ID: t.ID, Created: time.UnixMilli(t.Created).UTC(), Expires: time.UnixMilli(t.Expires).UTC(), Server: t.Server, Note: t.Note, State: "usable"}
	switch {
	case t.Used != 0:
		ji.State, ji.UsedBy = "used", t.UsedBy
	case t.Expires <= now.UnixMilli():
		ji.State = "expired"
	}
	return ji
}

// AdminToken is the secret of the cluster's first admin token, on the
// agent that made the cluster ("" elsewhere): it is also in the file
// admin.token of the data directory's cluster directory.
func (a *Agent) AdminToken() string {
	return strings.TrimSpace(string(must(os.ReadFile(filepath.Join(a.cfg.DataDir, "cluster", adminTokenFile)))))
}

func must(b []byte, _ error) []byte { return b }

// recordAdmission records, on the agent that made the cluster, the node
// itself and the admin token, once the control plane has a leader. A
// restart does it again; what is there already stays.
func (a *Agent) recordAdmission(ctx context.Context) error {
	admin := a.AdminToken()
	if admin == "" {
		return nil
	}
	err := a.propose(ctx, controlstate.Command{AdmitNode: &controlstate.AdmitNode{Node: a.ID, Server: true, Time: nowMillis()}})
	if err != nil && !errors.Is(err, controlstate.ErrNodeExists) {
		return err
	}
	id := strings.SplitN(strings.TrimPrefix(admin, tokenPrefix), "_", 2)[0]
	err = a.propose(ctx, controlstate.Command{CreateToken: &controlstate.CreateToken{Token: controlstate.Token{
		ID: id, Role: controlstate.RoleAdmin, Hash: tokenHash(admin), Created: nowMillis(), Note: "the cluster's first admin token"}}})
	if err != nil && !errors.Is(err, controlstate.ErrTokenExists) {
		return err
	}
	return nil
}

var _ atomic.Pointer[tls.Certificate] // the agent's current certificate (Agent.cert)
