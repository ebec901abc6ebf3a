// Package membership is a node's view of its cluster: which nodes exist,
// how to reach them, what they offer and whether they are alive. Nodes
// find each other by gossip with hashicorp/serf (this package is its only
// importer): each gossips its Info as serf tags, encrypted with the
// cluster's key, and failures are detected by memberlist's probes. A node
// without the key can neither join nor read the gossip.
package membership

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// Info is what a node tells the cluster about itself.
type Info struct {
	ID        string             // the node's ID, unique in the cluster
	QUIC      string             // host:port of its QUIC transport
	HTTP      string             // host:port of its HTTP API
	Role      string             // "server" or "client"
	Resources map[string]float64 // totals: "CPU", "GPU", "memory" (bytes), custom ones
	Used      map[string]float64 // the part of Resources in use, as last gossiped
	Labels    map[string]string  // for label selectors, for example tier=edge
}

// Status is what the local node believes about a member.
type Status string

// Member statuses.
const (
	Alive   Status = "alive"
	Suspect Status = "suspect" // missed probes; declared dead unless it answers
	Leaving Status = "leaving"
	Left    Status = "left" // left on purpose
	Dead    Status = "dead" // failed: stopped answering
)

// Member is one node as the local node sees it.
type Member struct {
	Info
	Gossip string // host:port of its gossip endpoint
	Status Status
}

// EventKind says what happened to a member.
type EventKind int

// Event kinds.
const (
	Joined EventKind = iota + 1
	Updated
	LeftCluster
	Failed
	Reaped // forgotten after being dead or gone long enough
)

func (k EventKind) String() string {
	switch k {
	case Joined:
		return "joined"
	case Updated:
		return "updated"
	case LeftCluster:
		return "left"
	case Failed:
		return "failed"
	case Reaped:
		return "reaped"
	}
	return "unknown"
}

// Event is a change of one member.
type Event struct {
	Kind   EventKind
	Member Member
}

// Timing tunes failure detection. The zero value is memberlist's LAN
// defaults (a failed node is suspected within seconds and declared dead
// after its suspicion timeout); Fast is for tests on loopback.
type Timing struct {
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	GossipInterval time.Duration
	SuspicionMult  int
	// ReapAfter is how long a dead or departed member stays listed.
	ReapAfter time.Duration
}

// Fast is a Timing for tests on one machine: a killed node is declared
// dead within about a second.
var Fast = Timing{ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond,
	GossipInterval: 20 * time.Millisecond, SuspicionMult: 2, ReapAfter: 30 * time.Second}

// Config configures a node's membership.
type Config struct {
	Info Info
	// BindAddr is the gossip endpoint, host:port, for UDP and TCP both;
	// port 0 picks a free one (see Membership.Addr).
	BindAddr string
	// AdvertiseAddr, when set, is the address others reach this node at.
	AdvertiseAddr string
	// Key encrypts and authenticates gossip: 16, 24 or 32 bytes.
	Key []byte
	// ExtraKeys are more keys gossip is decrypted with (a rotation under
	// way).
	ExtraKeys [][]byte
	// SnapshotPath, when set, keeps the member list on disk so that a
	// restarted node rejoins the nodes it knew.
	SnapshotPath string
	Timing       Timing
	// Log receives serf's and memberlist's log lines (nil: discarded).
	Log io.Writer
}

// Errors of the package.
var (
	ErrNoKey   = errors.New("membership: a gossip key is required")
	ErrClosed  = errors.New("membership: closed")
	ErrNoJoin  = errors.New("membership: could not join any of the given nodes")
	errBadAddr = errors.New("membership: bad address")
)

// Membership is a running member of a cluster.
type Membership struct {
	serf    *serf.Serf
	keyring *memberlist.Keyring
	events  chan Event
	serfCh  chan serf.Event
	done    chan struct{}
	wg      sync.WaitGroup

	mu     sync.Mutex
	queue  []Event // events not yet taken by the reader of events
	wake   chan struct{}
	closed bool
}

// Start creates the local member. It is alone in its cluster until Join.
func Start(cfg Config) (*Membership, error) {
	if n := len(cfg.Key); n != 16 && n != 24 && n != 32 {
		return nil, fmt.Errorf("%w (16, 24 or 32 bytes; got %d)", ErrNoKey, n)
	}
	tags, err := encodeTags(cfg.Info)
	if err != nil {
		return nil, err
	}
	host, port, err := splitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: %w", cfg.BindAddr, err)
	}
	logOut := cfg.Log
	if logOut == nil {
		logOut = io.Discard
	}
	ml := memberlist.DefaultLANConfig()
	ml.Name = cfg.Info.ID
	ml.BindAddr, ml.BindPort = host, port
	ml.AdvertisePort = port
	if cfg.AdvertiseAddr != "" {
		ah, ap, err := splitHostPort(cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("advertise address %q: %w", cfg.AdvertiseAddr, err)
		}
		ml.AdvertiseAddr, ml.AdvertisePort = ah, ap
	}
	keyring, err := memberlist.NewKeyring(cfg.ExtraKeys, cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoKey, err)
	}
	ml.Keyring = keyring
	ml.GossipVerifyIncoming, ml.GossipVerifyOutgoing = true, true
	ml.Logger = log.New(logOut, "", log.LstdFlags)
	t := cfg.Timing
	if t.ProbeInterval > 0 {
		ml.ProbeInterval = t.ProbeInterval
	}
	if t.ProbeTimeout > 0 {
		ml.ProbeTimeout = t.ProbeTimeout
	}
	if t.GossipInterval > 0 {
		ml.GossipInterval = t.GossipInterval
	}
	if t.SuspicionMult > 0 {
		ml.SuspicionMult = t.SuspicionMult
	}

	sc := serf.DefaultConfig()
	sc.NodeName = cfg.Info.ID
	sc.Tags = tags
	sc.MemberlistConfig = ml
	sc.Logger = log.New(logOut, "", log.LstdFlags)
	sc.SnapshotPath = cfg.SnapshotPath
	sc.RejoinAfterLeave = true
	if t.ReapAfter > 0 {
		sc.ReconnectTimeout = t.ReapAfter
		sc.TombstoneTimeout = t.ReapAfter
		sc.ReapInterval = min(sc.ReapInterval, t.ReapAfter/2)
	}
	m := &Membership{keyring: keyring, events: make(chan Event), serfCh: make(chan serf.Event, 256), done: make(chan struct{}), wake: make(chan struct{}, 1)}
	sc.EventCh = m.serfCh
	s, err := serf.Create(sc)
	if err != nil {
		return nil, fmt.Errorf("membership: start gossip on %s: %w", cfg.BindAddr, err)
	}
	m.serf = s
	m.wg.Add(2)
	go m.translate()
	go m.deliver()
	return m, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%w: port %q", errBadAddr, ps)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// Keys returns the gossip keys this member decrypts with, the one it
// encrypts with first.
func (m *Membership) Keys() [][]byte { return m.keyring.GetKeys() }

// InstallKey adds a gossip key this member decrypts with; UseKey makes an
// installed key the one it encrypts with; RemoveKey drops one that is
// not in use. Rotating the cluster's key is: install the new key on every
// member, use it on every member, remove the old one from every member.
func (m *Membership) InstallKey(key []byte) error { return m.keyring.AddKey(key) }

// UseKey makes an installed key the one this member encrypts with.
func (m *Membership) UseKey(key []byte) error { return m.keyring.UseKey(key) }

// RemoveKey drops a key this member does not encrypt with.
func (m *Membership) RemoveKey(key []byte) error { return m.keyring.RemoveKey(key) }

// Addr is the gossip address others can join this node at.
func (m *Membership) Addr() string {
	n := m.serf.Memberlist().LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Join contacts the given gossip addresses and joins their cluster. It
// returns how many it reached; reaching one is enough.
func (m *Membership) Join(addrs ...string) (int, error) {
	n, err := m.serf.Join(addrs, true)
	if n == 0 {
		if err == nil {
			err = errors.New("no address given")
		}
		return 0, fmt.Errorf("%w %v: %v (a node needs the cluster's gossip key to join: pass the join token the first agent printed)", ErrNoJoin, addrs, err)
	}
	return n, nil
}

// Local is the local node.
func (m *Membership) Local() Member {
	mm, _ := m.member(m.serf.LocalMember(), nil)
	return mm
}

// Members lists the nodes the local node knows, sorted by ID. Members
// whose tags cannot be read are left out.
func (m *Membership) Members() []Member {
	states := map[string]memberlist.NodeStateType{}
	for _, n := range m.serf.Memberlist().Members() {
		states[n.Name] = n.State
	}
	var out []Member
	for _, sm := range m.serf.Members() {
		if mm, err := m.member(sm, states); err == nil {
			out = append(out, mm)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// RTT estimates the round trip to the member named id from the two
// nodes' network coordinates (Vivaldi, kept by serf from its probes: no
// traffic of its own); ok is false until the member's coordinate is known.
func (m *Membership) RTT(id string) (rtt time.Duration, ok bool) {
	me, err := m.serf.GetCoordinate()
	if err != nil {
		return 0, false
	}
	other, ok := m.serf.GetCachedCoordinate(id)
	if !ok || other == nil || !me.IsCompatibleWith(other) {
		return 0, false
	}
	return me.DistanceTo(other), true
}

func (m *Membership) member(sm serf.Member, states map[string]memberlist.NodeStateType) (Member, error) {
	in, err := decodeTags(sm.Tags)
	if err != nil {
		return Member{}, err
	}
	mm := Member{Info: in, Gossip: net.JoinHostPort(sm.Addr.String(), strconv.Itoa(int(sm.Port)))}
	switch sm.Status {
	case serf.StatusAlive:
		mm.Status = Alive
		if st, ok := states[sm.Name]; ok && st == memberlist.StateSuspect {
			mm.Status = Suspect
		}
	case serf.StatusLeaving:
		mm.Status = Leaving
	case serf.StatusLeft:
		mm.Status = Left
	default:
		mm.Status = Dead
	}
	return mm, nil
}

// Update gossips a new description of the local node (its ID stays).
func (m *Membership) Update(in Info) error {
	in.ID = m.serf.LocalMember().Name
	tags, err := encodeTags(in)
	if err != nil {
		return err
	}
	return m.serf.SetTags(tags)
}

// Events delivers member changes in order. It is closed by Close. Events
// queue without bound while nobody reads, so gossip never waits for the
// reader.
func (m *Membership) Events() <-chan Event { return m.events }

// translate turns serf's events into Events, in order.
func (m *Membership) translate() {
	defer m.wg.Done()
	for {
		select {
		case <-m.done:
			return
		case e := <-m.serfCh:
			me, ok := e.(serf.MemberEvent)
			if !ok {
				continue
			}
			var kind EventKind
			switch me.Type {
			case serf.EventMemberJoin:
				kind = Joined
			case serf.EventMemberUpdate:
				kind = Updated
			case serf.EventMemberLeave:
				kind = LeftCluster
			case serf.EventMemberFailed:
				kind = Failed
			case serf.EventMemberReap:
				kind = Reaped
			default:
				continue
			}
			m.mu.Lock()
			for _, sm := range me.Members {
				if mm, err := m.member(sm, nil); err == nil {
					m.queue = append(m.queue, Event{Kind: kind, Member: mm})
				}
			}
			m.mu.Unlock()
			select {
			case m.wake <- struct{}{}:
			default:
			}
		}
	}
}

// deliver hands queued events to the reader of Events.
func (m *Membership) deliver() {
	defer m.wg.Done()
	defer close(m.events)
	for {
		m.mu.Lock()
		var next *Event
		if len(m.queue) > 0 {
			e := m.queue[0]
			m.queue = m.queue[1:]
			next = &e
		}
		m.mu.Unlock()
		if next == nil {
			select {
			case <-m.done:
				return
			case <-m.wake:
				continue
			}
		}
		select {
		case <-m.done:
			return
		case m.events <- *next:
		}
	}
}

// Leave tells the cluster this node leaves on purpose, then stops.
func (m *Membership) Leave() error {
	err := m.serf.Leave()
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close stops gossiping without telling anyone: to the others the node
// fails.
func (m *Membership) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	err := m.serf.Shutdown()
	close(m.done)
	m.wg.Wait()
	return err
}
