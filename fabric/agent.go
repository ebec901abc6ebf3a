//go:build linux

package fabric

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/control"
	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/core"
	"github.com/wasmfabric/fabric/internal/membership"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/peerlink"
	"github.com/wasmfabric/fabric/internal/peerwire"
	"github.com/wasmfabric/fabric/internal/scheduler"
	"github.com/wasmfabric/fabric/internal/secrets"
	"github.com/wasmfabric/fabric/internal/transport"
	"github.com/wasmfabric/fabric/internal/wire"
)

// AgentConfig configures a long-running agent (`fabric agent`).
type AgentConfig struct {
	// DataDir holds the cluster's secrets, the node's ID and the node's
	// state. Required.
	DataDir string
	// GossipAddr, QUICAddr and HTTPAddr are where the agent listens
	// (host:port; port 0 picks a free one).
	GossipAddr, QUICAddr, HTTPAddr string
	// ServeAddr is where the Serve ingress answers HTTP requests for the
	// deployments (host:port; empty: no ingress on this agent).
	ServeAddr string
	// ServeOptional: when ServeAddr cannot be listened on, the agent runs
	// without an ingress (and logs why) instead of failing to start.
	ServeOptional bool
	// AdvertiseHost is the host other nodes reach this one at (empty: the
	// gossip layer's choice).
	AdvertiseHost string
	// AdvertiseQUIC is the host:port other nodes dial for QUIC, when it
	// is not QUICAddr's (a port forwarded by NAT or a relay; empty: the
	// QUIC address, with AdvertiseHost).
	AdvertiseQUIC string
	// Join lists gossip addresses of members to join (empty: start a
	// cluster, or rejoin the nodes of the last run).
	Join []string
	// Token is a join token from the first agent. Without it the agent
	// uses the secrets in DataDir, creating them if there are none.
	Token string
	// Bootstrap makes a server whose data directory holds no raft state
	// form a control plane of its own (the first agent of a new cluster
	// does so by itself): for the first agent of a cluster made before
	// the control plane existed. Never on two agents of one cluster.
	Bootstrap bool
	// Labels are the node's labels, for label selectors.
	Labels map[string]string
	// Node configures the local node (resources, workers); its DataDir is
	// set by the agent.
	Node Config
	// Timing tunes failure detection (zero: LAN defaults).
	Timing membership.Timing
	// historyStep is how often the node is sampled for GET /v1/history
	// (zero: 10 s; tests take less).
	historyStep time.Duration
	// Log receives the agent's own messages, such as nodes joining and
	// failing (nil: discarded).
	Log io.Writer
	// GossipLog receives serf's and memberlist's log lines (nil: discarded).
	GossipLog io.Writer
	// JobLogLimit bounds the output kept of each job whose driver runs on
	// the agent (0: DefaultJobLogLimit).
	JobLogLimit int64
	// ModuleDiskLimit bounds the disk the agent's modules and their
	// compiled code take: past it, unused compiled code and then unused
	// modules are removed, least recently used first (0:
	// DefaultModuleDiskLimit).
	ModuleDiskLimit int64
	// MaxRunningJobs bounds the drivers that run on the agent at once;
	// the jobs past it stay pending, in order, until one ends (0:
	// DefaultMaxRunningJobs). Each driver is a worker process.
	MaxRunningJobs int
	// CertTTL is how long the node certificates that servers sign are
	// valid (0: DefaultCertTTL); a node renews its own when a third of
	// it is left.
	CertTTL time.Duration
	// UploadIdle bounds how long an upload (a module in a request's body)
	// may send nothing before it is refused (0: DefaultUploadIdle).
	UploadIdle time.Duration
}

// DefaultMaxRunningJobs is AgentConfig.MaxRunningJobs's default.
const DefaultMaxRunningJobs = 32

// DefaultUploadIdle is AgentConfig.UploadIdle's default.
const DefaultUploadIdle = 30 * time.Second

// Agent is a node of a cluster: its local Node, its membership and its
// HTTP API.
type Agent struct {
	cfg      AgentConfig
	ID       string
	node     *Node
	members  *membership.Membership
	quic     *transport.Endpoint
	cluster  *secrets.Cluster
	link     *peerlink.Link
	http     *http.Server
	httpAddr string
	info     membership.Info
	done     chan struct{}
	// ready is closed once the agent's membership is set: the QUIC
	// endpoint serves peers before that, and its handler waits for it.
	ready chan struct{}
	wg    sync.WaitGroup
	// usageStop and usageDone stop gossipUsage before the node leaves: a
	// tag update racing a leave waits seconds for an acknowledgement.
	usageStop chan struct{}
	usageDone chan struct{}
	// serveMu guards replicaSets, the replica sets hosted here by their
	// pseudo-peers.
	serveMu     sync.Mutex
	replicaSets map[string]*replicaSet
	// serve is the deployments as this agent sees them and the replicas
	// it hosts; serveDone closes once serveLoop, stopped with usageStop,
	// has closed them. load counts the ingress's requests in flight.
	serve       serveState
	serveDone   chan struct{}
	load        ingressLoad
	serveAuths  serveAuthCache
	serveBudget byteBudget // the bytes the ingress holds (serveBudget)
	// serveTimeout, when set (tests), replaces the const serveTimeout.
	serveTimeout atomic.Int64
	autoscaler   autoscaler
	ingress      *http.Server
	ingressAddr  string
	// historyDone closes once sampleHistory, stopped with usageStop, ends.
	historyDone chan struct{}
	usageOnce   sync.Once
	closeMu     sync.Mutex
	closed      bool
	// direct are the answers RunRemote waits for, by task ID.
	directMu sync.Mutex
	direct   map[objects.ID]chan *peerwire.TaskDone
	// discarded counts messages not sent because their node is gone.
	discarded atomic.Uint64
	// table is the cluster's members as membership events last told of
	// them: addresses and states, looked up on every send.
	tableMu sync.RWMutex
	table   map[string]membership.Member

	// log is the agent's structured log (cfg.Log; discarded when nil).
	log *slog.Logger
	// ctl is the control-plane server of a server agent (nil on a client).
	ctl *control.Server
	// leaderHint is the control plane's leader as last heard (a string).
	leaderHint atomic.Value
	// reconcile wakes the leader's loop (a member changed).
	reconcile chan struct{}
	// agentCtx ends when the agent stops; stopping is set then.
	agentCtx    context.Context
	agentCancel context.CancelFunc
	stopping    atomic.Bool
	draining    atomic.Bool
	// calls are the calls waiting for their task, by pseudo-peer.
	callsMu sync.Mutex
	calls   map[string]*pendingCall
	// running are the jobs whose drivers run here, by job ID.
	jobsMu  sync.Mutex
	running map[string]*runningJob
	// driverSlots bounds the drivers running at once (MaxRunningJobs).
	driverSlots chan struct{}
	// logReads and remoteLogReads bound the job logs served at once.
	logReads, remoteLogReads chan struct{}
	// stateReads bounds the state API's listings answered through this
	// agent, stateServes the task queries other nodes ask of it.
	stateReads, stateServes *tenantSlots
	// metricsHandler serves /metrics, made at the first scrape.
	metricsOnce    sync.Once
	metricsHandler http.Handler
	// authSlots bounds the tenants' token checks run at once.
	authSlots chan struct{}
	// gcWake wakes the module collector; gcGrace, when set, replaces
	// moduleGrace (tests; nanoseconds, negative for none).
	gcWake  chan struct{}
	gcGrace atomic.Int64
	// cert is the certificate the agent presents (renewed in place);
	// revoked the nodes revoked, as last read; serverPeers the peers
	// that showed a server's certificate.
	cert        atomic.Pointer[tls.Certificate]
	revoked     atomic.Pointer[map[string]bool]
	serverPeers sync.Map
	fakeServers sync.Map // members that gossip a server's role without its certificate
	// gossipKeyMu orders the steps of gossip key rotations on this
	// member; rotateMu the rotations this server drives.
	gossipKeyMu, rotateMu sync.Mutex
	// grants checks jobs' grants (grants.go).
	grants *grantChecker
	// moduleAllows are the nodes that may copy modules from here
	// (moduleproof.go).
	moduleAllows moduleAllows
	// quotas are the leader's usage reports of the nodes.
	quotas quotaReports
	// serverAddrs are the servers' QUIC addresses as last saved.
	serverAddrsMu sync.Mutex
	serverAddrs   []string
}

// Errors of the agent.
var (
	ErrNoDataDir = errors.New("fabric: the agent needs a data directory")
	// ErrOtherCluster means a join token names another cluster than the
	// one whose secrets are in the data directory.
	ErrOtherCluster = errors.New("fabric: the join token is for another cluster than the data directory's")
)

// StartAgent starts an agent: it loads or creates the cluster's secrets,
// starts the local node, gossips, joins cfg.Join and serves the HTTP API.
func StartAgent(cfg AgentConfig) (*Agent, error) {
	if cfg.DataDir == "" {
		return nil, ErrNoDataDir
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	id, err := nodeID(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cfg.GossipAddr = cmp.Or(cfg.GossipAddr, DefaultGossipAddr)
	cfg.QUICAddr = cmp.Or(cfg.QUICAddr, DefaultQUICAddr)
	cfg.HTTPAddr = cmp.Or(cfg.HTTPAddr, DefaultHTTPAddr)
	hosts := []string{"127.0.0.1", "::1"}
	if cfg.AdvertiseHost != "" {
		hosts = append(hosts, cfg.AdvertiseHost)
	}
	idn, err := loadIdentity(context.Background(), cfg, id, hosts)
	if err != nil {
		return nil, err
	}
	cluster, created := idn.cluster, idn.created
	if len(cfg.Join) == 0 {
		cfg.Join = idn.members
	}
	nodeCfg := cfg.Node
	nodeCfg.DataDir = filepath.Join(cfg.DataDir, "node")
	nodeCfg.NodeID, nodeCfg.Labels = id, cfg.Labels
	nodeCfg.clustered, nodeCfg.registry = true, true
	if nodeCfg.TenantCgroups == "" {
		nodeCfg.TenantCgroups = CgroupsAuto
	}
	grants := &grantChecker{verify: idn.cluster.VerifyGrant}
	nodeCfg.verifyGrant = grants.check
	var agent *Agent // set below: the node asks it for grants
	nodeCfg.grant = func(ctx context.Context, job, tenant, root, controlJob, module string) []byte {
		return agent.grantFor(ctx, job, tenant, root, controlJob, module)
	}
	if err := os.MkdirAll(nodeCfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	node, err := Start(nodeCfg)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, ID: id, node: node, cluster: cluster, done: make(chan struct{}), ready: make(chan struct{}),
		usageStop: make(chan struct{}), usageDone: make(chan struct{}), historyDone: make(chan struct{}), replicaSets: map[string]*replicaSet{},
		serveDone: make(chan struct{}), serveAuths: serveAuthCache{slots: make(chan struct{}, serveAuthSlots)}, serveBudget: byteBudget{max: serveBudget}, serve: serveState{kick: make(chan struct{}, 1), stepped: make(chan struct{}), sets: map[string]*replicaSet{}, vers: map[string]uint64{}}, direct: map[objects.ID]chan *peerwire.TaskDone{}, table: map[string]membership.Member{},
		reconcile: make(chan struct{}, 1), running: map[string]*runningJob{}, calls: map[string]*pendingCall{},
		driverSlots: make(chan struct{}, cmp.Or(cfg.MaxRunningJobs, DefaultMaxRunningJobs)), gcWake: make(chan struct{}, 1),
		logReads: make(chan struct{}, maxLogReads), authSlots: make(chan struct{}, maxAuthChecks), remoteLogReads: make(chan struct{}, maxRemoteLogReads),
		stateReads: newTenantSlots(maxStateRequests, maxStateRequests/2), stateServes: newTenantSlots(maxStateRequests, maxStateRequests/2)}
	agent = a
	a.grants = grants
	a.agentCtx, a.agentCancel = context.WithCancel(context.Background())
	node.mu.Lock()
	node.names = a // before any job can run: the core asks it for actor names
	node.mu.Unlock()
	a.log = slog.New(slog.DiscardHandler)
	if cfg.Log != nil {
		a.log = slog.New(slog.NewTextHandler(cfg.Log, nil))
	}
	a.link = peerlink.New(peerlink.Config{
		Send: a.sendBatch,
		Log:  func(s string) { a.logf("fabric agent: %s", s) },
		Unreachable: func(node string) {
			go a.node.step(core.PeerDown{Node: scheduler.NodeID(node)})
		},
		Reachable: func(node string) { go a.peerUp(node) },
	})
	fail := func(err error) (*Agent, error) {
		_ = a.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fail(fmt.Errorf("fabric: HTTP API on %s: %w (another agent may be running; pass --http-addr)", cfg.HTTPAddr, err))
	}
	a.httpAddr = ln.Addr().String()
	a.cert.Store(&idn.cert)
	a.serverAddrs = idn.servers
	streams := map[transport.Type]transport.StreamHandler{msgRaft: a.acceptRaft, msgJobLogs: a.serveJobLog, msgServeStream: a.serveStreamPeer}
	tlsConf := cluster.TLSConfig(idn.cert, secrets.TLSOptions{Refuse: a.refusePeer, Current: a.certificate})
	if a.quic, err = transport.Listen(transport.Config{Addr: cfg.QUICAddr, TLS: tlsConf, Handler: a.handlePeer, Objects: agentObjects{node, a}, Streams: streams}); err != nil {
		_ = ln.Close()
		return fail(err)
	}
	// A server stays one across restarts: its raft state is in the data
	// directory.
	role := "client"
	if secrets.IsServer(idn.cert.Leaf) {
		role = "server"
	}
	u := node.Usage()
	a.info = membership.Info{ID: id, QUIC: cmp.Or(cfg.AdvertiseQUIC, advertise(a.quic.Addr(), cfg.AdvertiseHost)), HTTP: advertise(a.httpAddr, cfg.AdvertiseHost),
		Role: role, Resources: u.Total, Used: u.Used, Labels: cfg.Labels}
	var adv string
	if cfg.AdvertiseHost != "" {
		_, port, _ := net.SplitHostPort(cfg.GossipAddr)
		adv = net.JoinHostPort(cfg.AdvertiseHost, port)
	}
	gossipKey, extraKeys := cluster.GossipKey, secrets.ExtraGossipKeys(filepath.Join(cfg.DataDir, "cluster"))
	if !created && !cluster.CanSign() {
		gossipKey, extraKeys = a.catchUpGossipKeys(gossipKey, extraKeys)
	}
	a.members, err = membership.Start(membership.Config{Info: a.info, BindAddr: cfg.GossipAddr, AdvertiseAddr: adv,
		Key: gossipKey, ExtraKeys: extraKeys, SnapshotPath: filepath.Join(cfg.DataDir, "serf.snapshot"), Timing: cfg.Timing, Log: cfg.GossipLog})
	if err != nil {
		_ = ln.Close()
		return fail(err)
	}
	if role == "server" {
		if err := a.startControl(created || cfg.Bootstrap); err != nil {
			_ = ln.Close()
			return fail(err)
		}
	}
	close(a.ready)
	// The API is served over TLS with the node's certificate: clients
	// check it against the cluster's CA (fabric --ca, or the local
	// agent's data directory).
	a.http = &http.Server{Handler: a.api(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0),
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return a.certificate(), nil }}}
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		_ = a.http.ServeTLS(ln, "", "")
	}()
	go a.gossipUsage()
	go a.sampleHistory(a.historyStep(), a.usageStop, a.historyDone)
	go a.serveLoop(a.usageStop, a.serveDone)
	if cfg.ServeAddr != "" {
		if err := a.startIngress(cfg.ServeAddr); err != nil && !cfg.ServeOptional {
			return fail(err)
		} else if err != nil {
			a.warnf("fabric agent: no Serve ingress here: %v (pass --serve-addr HOST:PORT)", err)
		}
	}
	go a.watchMembers()
	if len(cfg.Join) > 0 {
		if err := a.join(cfg.Join); err != nil && !joinRetryable(err) {
			return fail(err) // they answered, and refused: trying again changes nothing
		} else if err != nil {
			// The members it names may not be up yet: the agent runs alone
			// and keeps trying, saying why each try failed.
			a.warnf("join %s failed: %v; retrying in the background", strings.Join(cfg.Join, ", "), err)
			a.wg.Add(1)
			go a.keepJoining(cfg.Join)
		}
	}
	node.mu.Lock()
	node.cluster = a
	node.mu.Unlock()
	for _, m := range a.members.Members() {
		a.remember(m)
		if m.Status == membership.Alive && m.ID != a.ID {
			node.step(core.PeerUp{Node: scheduler.NodeID(m.ID), Resources: resources(m.Resources), Labels: m.Labels})
		}
	}
	a.wg.Add(5)
	go a.reconcileOwnJobs()
	go a.collectModules()
	go a.watchRevocations()
	go a.renewLoop()
	go a.reportUsage()
	if a.ctl != nil {
		a.wg.Add(1)
		go a.leadLoop()
	}
	if a.AdminToken() != "" && (created || cfg.Bootstrap) {
		// The agent that made the cluster records itself and the admin
		// token; a new cluster's first API request waits for it.
		ctx, cancel := context.WithTimeout(a.agentCtx, controlHold)
		err := a.recordAdmission(ctx)
		cancel()
		if err != nil {
			return fail(fmt.Errorf("fabric: recording the cluster's admin token: %w", err))
		}
	}
	return a, nil
}

// remember records what membership says of a member.
func (a *Agent) remember(m membership.Member) {
	a.tableMu.Lock()
	a.table[m.ID] = m
	a.tableMu.Unlock()
}

// dropMember treats a revoked node as gone, whatever gossip says of it.
func (a *Agent) dropMember(id string) {
	a.tableMu.Lock()
	if m, ok := a.table[id]; ok {
		m.Status = membership.Left
		a.table[id] = m
	}
	a.tableMu.Unlock()
	a.link.Drop(id)
	a.link.Forget(id)
	a.node.step(core.PeerDown{Node: scheduler.NodeID(id), Gone: true})
	select {
	case a.reconcile <- struct{}{}:
	default:
	}
}

// member returns what membership last said of a node.
func (a *Agent) member(id string) (membership.Member, bool) {
	a.tableMu.RLock()
	defer a.tableMu.RUnlock()
	m, ok := a.table[id]
	return m, ok
}

// logf writes a line to the agent's log (slog's text form: time, level,
// message), if it has one.
func (a *Agent) logf(format string, args ...any) {
	a.log.Info(strings.TrimPrefix(fmt.Sprintf(format, args...), "fabric agent: "))
}

// warnf is logf at level WARN: something failed, and is retried or
// given up.
func (a *Agent) warnf(format string, args ...any) {
	a.log.Warn(strings.TrimPrefix(fmt.Sprintf(format, args...), "fabric agent: "))
}

// peerUp tells the node of an alive member again (after the link could
// not reach it for a while).
func (a *Agent) peerUp(id string) {
	if m, ok := a.member(id); ok && m.Status == membership.Alive {
		a.node.step(core.PeerUp{Node: scheduler.NodeID(m.ID), Resources: resources(m.Resources), Labels: m.Labels})
	}
}

// nodeID returns the node's ID, made on first start: the host name and
// random hex, so that two agents on one host differ.
func nodeID(dir string) (string, error) {
	path := filepath.Join(dir, "node-id")
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	}
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r == ',' || r == '=' || r == ' ' {
			return '-'
		}
		return r
	}, host)
	if len(host) > 24 {
		host = host[:24]
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b[:])
	if host != "" {
		id = host + "-" + id
	}
	return id, os.WriteFile(path, []byte(id+"\n"), 0o600)
}

// advertise replaces a wildcard or missing host in addr with host (when
// set) so that other nodes can dial it.
func advertise(addr, host string) string {
	h, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host != "" && (h == "" || h == "0.0.0.0" || h == "::") {
		return net.JoinHostPort(host, port)
	}
	return addr
}

// join contacts the given members, retrying for a while as Nomad's
// retry_join does: the first agent may still be starting.
func (a *Agent) join(addrs []string) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if _, err = a.members.Join(addrs...); err == nil {
			return nil
		}
		select {
		case <-a.done:
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
	return err
}

// joinRetryable reports whether a failed join may succeed later: the
// members did not answer. One whose answer could not be decrypted is of
// another cluster (or the token is wrong), which waiting does not change.
func joinRetryable(err error) bool {
	msg := strings.ToLower(err.Error())
	return !strings.Contains(msg, "decrypt") && !strings.Contains(msg, "encrypt")
}

// Backoff of keepJoining.
const (
	joinBackoffMin = time.Second
	joinBackoffMax = 30 * time.Second
)

// keepJoining tries to join addrs until it succeeds or the agent stops,
// waiting twice as long after each failure (up to joinBackoffMax), and
// logs each failure in full.
func (a *Agent) keepJoining(addrs []string) {
	defer a.wg.Done()
	wait := joinBackoffMin
	for {
		select {
		case <-a.done:
			return
		case <-time.After(wait):
		}
		_, err := a.members.Join(addrs...)
		if err == nil {
			a.logf("joined the cluster through %s", strings.Join(addrs, ", "))
			return
		}
		wait = min(2*wait, joinBackoffMax)
		a.warnf("join %s failed: %v; retrying in %s", strings.Join(addrs, ", "), err, wait)
	}
}

// watchMembers logs the cluster's changes as they happen.
func (a *Agent) watchMembers() {
	defer a.wg.Done()
	for e := range a.members.Events() {
		if a.isRevoked(e.Member.ID) {
			continue // gone for good: see dropMember
		}
		a.remember(e.Member)
		if e.Member.Role == "server" {
			a.rememberServers()
		}
		select {
		case a.reconcile <- struct{}{}:
		default:
		}
		if e.Member.ID == a.ID {
			continue
		}
		switch e.Kind {
		case membership.Joined, membership.Updated:
			if e.Member.Status == membership.Alive {
				a.node.step(core.PeerUp{Node: scheduler.NodeID(e.Member.ID), Resources: resources(e.Member.Resources), Labels: e.Member.Labels})
			}
		case membership.LeftCluster, membership.Failed, membership.Reaped:
			a.link.Drop(e.Member.ID)
			a.link.Forget(e.Member.ID)
			a.node.step(core.PeerDown{Node: scheduler.NodeID(e.Member.ID), Gone: true})
		}
		switch e.Kind {
		case membership.Joined, membership.LeftCluster, membership.Failed:
			a.log.Info("node "+e.Kind.String(), "node", e.Member.ID, "gossip", e.Member.Gossip)
		}
	}
}

// usageInterval bounds how often a node gossips its resource use.
const usageInterval = 2 * time.Second

// gossipUsage keeps the node's gossiped resource use current.
func (a *Agent) gossipUsage() {
	defer close(a.usageDone)
	t := time.NewTicker(usageInterval)
	defer t.Stop()
	last := a.info.Used
	for {
		select {
		case <-a.usageStop:
			return
		case <-t.C:
		}
		u := a.node.Usage()
		if maps.Equal(u.Used, last) {
			continue
		}
		info := a.info
		info.Used = u.Used
		if a.members.Update(info) == nil {
			last = u.Used
		}
	}
}

// Messages between agents over QUIC: a ping, and batches of the peer
// link (internal/peerwire), each answered with an acknowledgement once
// taken (in order; applied after).
const (
	msgPing  transport.Type = 1  // body: none; answer: the node's ID
	msgBatch transport.Type = 12 // body: a peerwire.Batch; answer: msgAck
	msgAck   transport.Type = 13 // body: none
)

// handlePeer answers another agent's request; peer is its node ID, from
// its certificate.
func (a *Agent) handlePeer(ctx context.Context, peer string, t transport.Type, body []byte) (transport.Type, []byte, error) {
	select {
	case <-a.ready:
	case <-a.done:
		return 0, nil, ErrClosed
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
	if err := a.peerMay(peer, t); err != nil {
		return 0, nil, err
	}
	switch t {
	case msgPing:
		return msgPing, []byte(a.ID), nil
	case msgJoin:
		b, err := a.handleJoin(ctx, peer, body)
		return msgJoin, b, err
	case msgRenew:
		b, err := a.handleRenew(ctx, peer, body)
		return msgRenew, b, err
	case msgControl:
		var req controlRequest
		if err := wire.Unmarshal(body, &req); err != nil {
			return 0, nil, fmt.Errorf("malformed control request: %w", err)
		}
		b, err := wire.Marshal(a.serveControl(ctx, peer, req))
		return msgControl, b, err
	case msgJobStop:
		id := string(body)
		j, err := a.lookupJob(ctx, id)
		if err == nil && !j.State.Ended() && j.Node == a.ID {
			return 0, nil, fmt.Errorf("job %s has not been stopped", id)
		}
		if err != nil && !errors.Is(err, ErrNoJob) {
			return 0, nil, err
		}
		a.stopLocal(id)
		return msgAck, nil, nil
	case msgModuleCopy:
		digest := string(body)
		if !controlstate.ValidDigest(digest) {
			return 0, nil, fmt.Errorf("%q is not a module digest", digest)
		}
		if _, err := a.control(ctx, controlRequest{Op: "module", ID: digest}); err != nil {
			return 0, nil, err
		}
		if err := a.node.pullModuleFrom(ctx, digest, []string{peer}, nil); err != nil { // it asked: it allows
			return 0, nil, err
		}
		err := a.propose(ctx, controlstate.Command{AddModule: &controlstate.AddModule{Digest: digest, Size: a.node.moduleSize(digest), Node: a.ID, Time: nowMillis(), Copy: true}})
		return msgAck, nil, err
	case msgJobRun:
		go a.tellRun(string(body), a.ID)
		return msgAck, nil, nil
	case msgGossipKey:
		return msgAck, nil, a.handleGossipKey(body)
	case msgGossipKeys:
		b, err := a.gossipKeys()
		return msgGossipKeys, b, err
	case msgModuleProof:
		return msgAck, nil, a.handleModuleProof(peer, body)
	case msgTasks:
		b, err := a.handleTasksPeer(ctx, body)
		return msgTasks, b, err
	case msgServe:
		b, err := a.handleServePeer(ctx, body)
		return msgServe, b, err
	case msgBatch:
		err := a.link.Receive(peer, body, func(msgs []peerwire.Message) {
			a.grants.screen(msgs) // outside the node's lock
			evs := make([]core.Event, 0, len(msgs))
			for _, m := range msgs {
				if d, ok := m.(*peerwire.TaskDone); ok && a.directAnswer(d) {
					continue
				}
				evs = append(evs, core.PeerMessage{From: scheduler.NodeID(peer), Msg: m})
			}
			a.node.stepAll(evs)
		})
		return msgAck, nil, err
	}
	return 0, nil, fmt.Errorf("message type %d is not a request", t)
}

// sendBatch sends one batch of the peer link and waits for its
// acknowledgement.
func (a *Agent) sendBatch(ctx context.Context, node string, body []byte) error {
	addr, err := a.addrOf(node)
	if err != nil {
		return err
	}
	_, _, err = a.quic.Call(ctx, addr, msgBatch, body)
	if errors.Is(err, transport.ErrRemote) {
		return fmt.Errorf("%w: %v", peerlink.ErrRefused, err)
	}
	return err
}

// Send queues a message for another node (the node's cluster): through the
// peer link, unless membership says the node is gone.
func (a *Agent) Send(node string, m peerwire.Message) {
	if strings.HasPrefix(node, servePeerPrefix) {
		a.serveMessage(node, m)
		return
	}
	if strings.HasPrefix(node, callPeerPrefix) {
		a.callMessage(node, m)
		return
	}
	if mem, ok := a.member(node); ok && mem.Status != membership.Alive && mem.Status != membership.Suspect {
		a.discarded.Add(1)
		return
	}
	a.link.Send(node, m)
}

// addrOf returns the QUIC address of an alive (or suspect) node.
func (a *Agent) addrOf(nodeID string) (string, error) {
	if m, ok := a.member(nodeID); ok && (m.Status == membership.Alive || m.Status == membership.Suspect) {
		return m.QUIC, nil
	}
	return "", fmt.Errorf("%w: %q", ErrUnknownNode, nodeID)
}

// Pull copies an object's bytes from another node (the node's cluster).
func (a *Agent) Pull(ctx context.Context, nodeID string, id objects.ID, alloc func(size int64) ([]byte, error)) error {
	addr, err := a.addrOf(nodeID)
	if err != nil {
		return err
	}
	_, err = a.quic.Pull(ctx, addr, [transport.IDSize]byte(id), alloc, transport.PullOptions{})
	return err
}

// ErrUnknownNode means no alive member has the node ID.
var ErrUnknownNode = errors.New("fabric: no alive node with that ID")

// Ping calls the node over QUIC and returns the round-trip time.
func (a *Agent) Ping(ctx context.Context, nodeID string) (time.Duration, error) {
	for _, m := range a.members.Members() {
		if m.ID != nodeID || m.Status != membership.Alive {
			continue
		}
		start := time.Now()
		_, body, err := a.quic.Call(ctx, m.QUIC, msgPing, nil)
		if err != nil {
			return 0, err
		}
		if string(body) != nodeID {
			return 0, fmt.Errorf("fabric: %s answered at %s, where %s was expected", body, m.QUIC, nodeID)
		}
		return time.Since(start), nil
	}
	return 0, fmt.Errorf("%w: %q", ErrUnknownNode, nodeID)
}

// Node is the agent's local node.
func (a *Agent) Node() *Node { return a.node }

// Members is the agent's view of the cluster.
func (a *Agent) Members() *membership.Membership { return a.members }

// HTTPAddr is where the HTTP API listens.
func (a *Agent) HTTPAddr() string { return a.httpAddr }

// GossipAddr is where other agents join this one.
func (a *Agent) GossipAddr() string { return a.members.Addr() }

// Client returns a client of the agent's API with token, trusting the
// cluster's CA.
func (a *Agent) Client(token string) *Client {
	return &Client{Address: "https://" + a.HTTPAddr(), Token: token, CA: a.cluster.Pool()}
}

// CAPEM is the cluster's CA certificate, PEM-encoded: what clients of the
// API trust.
func (a *Agent) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.cluster.CADER()})
}

// QUICAddr is the address the agent's QUIC endpoint listens on.
func (a *Agent) QUICAddr() string { return a.quic.Addr() }

// APIToken is the cluster's admin token on the agent that made the
// cluster ("" elsewhere): what its local commands use.
func (a *Agent) APIToken() string { return a.AdminToken() }

// stopUsage stops gossipUsage and waits for it, if it was started.
func (a *Agent) stopUsage() {
	a.usageOnce.Do(func() {
		close(a.usageStop)
		if a.members != nil && a.http != nil { // gossipUsage and sampleHistory were started
			<-a.usageDone
			<-a.historyDone
			<-a.serveDone
		}
	})
}

// Leave tells the cluster this node leaves, then stops it.
func (a *Agent) Leave() error {
	var err error
	a.stopUsage()
	if a.members != nil {
		err = a.members.Leave()
	}
	if cerr := a.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close stops the agent without telling the cluster (others see it fail).
func (a *Agent) Close() error {
	a.closeMu.Lock()
	if a.closed {
		a.closeMu.Unlock()
		return nil
	}
	a.closed = true
	a.closeMu.Unlock()
	a.stopUsage()
	a.stopping.Store(true)
	a.agentCancel()
	close(a.done)
	var errs []error
	if a.ingress != nil {
		errs = append(errs, a.ingress.Close())
	}
	if a.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, a.http.Shutdown(ctx))
		cancel()
	}
	if a.members != nil {
		errs = append(errs, a.members.Close())
	}
	if a.quic != nil {
		errs = append(errs, a.quic.Close())
	}
	a.link.Close()
	a.wg.Wait()
	if a.ctl != nil {
		errs = append(errs, a.ctl.Close())
	}
	errs = append(errs, a.node.Close())
	return errors.Join(errs...)
}

// directAnswer hands a TaskDone to the RunRemote waiting for it.
func (a *Agent) directAnswer(m *peerwire.TaskDone) bool {
	a.directMu.Lock()
	ch := a.direct[m.Task]
	a.directMu.Unlock()
	if ch == nil {
		return false
	}
	select {
	case ch <- m:
	default:
	}
	return true
}

// Errors of remote tasks.
var (
	// ErrRemoteTask wraps the error a task that ran on another node failed with.
	ErrRemoteTask = errors.New("fabric: remote task failed")
)

// RunRemote runs a task of the module with the digest on another node, in
// a job of its own of the cluster's operator, and returns its value
// (CBOR). Its grant is signed here on a server; elsewhere the leader signs
// it for the cluster admin token ctx carries (withCallerToken). The module must be on
// this node. A task that fails returns an error wrapping ErrRemoteTask
// with the task's message; one the node refuses, an error wrapping
// transport.ErrRemote.
func (a *Agent) RunRemote(ctx context.Context, nodeID, digest string, spec abi.TaskSpec) ([]byte, error) {
	if !a.node.HasModule(digest) {
		return nil, fmt.Errorf("fabric: module %.12s is not on this node", digest)
	}
	job := string(newJobID())
	var task objects.ID
	if _, err := rand.Read(task[:16]); err != nil {
		return nil, err
	}
	ch := make(chan *peerwire.TaskDone, 1)
	a.directMu.Lock()
	a.direct[task] = ch
	a.directMu.Unlock()
	defer func() {
		a.directMu.Lock()
		delete(a.direct, task)
		a.directMu.Unlock()
		a.link.Send(nodeID, &peerwire.EndJob{Job: job})
	}()
	a.moduleAllows.allow(nodeID, digest, time.Now().Add(moduleAllowTTL)) // it fetches the module from here
	a.link.Send(nodeID, &peerwire.RunTask{Job: job, Root: a.ID, Digest: digest, What: peerwire.RunPlainTask, Task: task, Attempt: 1,
		Spec: spec.AppendCBOR(nil), Grant: a.grantFor(ctx, job, "", a.ID, "", digest)})
	var m *peerwire.TaskDone
	select {
	case m = <-ch:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	switch {
	case m.Refused != "":
		return nil, fmt.Errorf("%w: %s", transport.ErrRemote, m.Refused)
	case m.Error != nil:
		var ev abi.ErrorValue
		_ = wire.Unmarshal(m.Error, &ev)
		return nil, fmt.Errorf("%w on %s: %s: %s", ErrRemoteTask, nodeID, ev.Kind, ev.Message)
	case len(m.Results) != 1 || m.Results[0].Held:
		return nil, fmt.Errorf("fabric: node %s answered with a result this call cannot take (%d values, or one too large to send)", nodeID, len(m.Results))
	}
	return m.Results[0].Value, nil
}
