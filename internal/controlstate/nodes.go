package controlstate

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// JoinToken is a join token's record: a new node shows the token's
// certificate (whose private key is the token's secret, never stored)
// and, once, has its own certificate signed. Times are Unix
// milliseconds.
type JoinToken struct {
	ID      string `cbor:"1,keyasint" json:"id"`
	Created int64  `cbor:"2,keyasint" json:"created"`
	Expires int64  `cbor:"3,keyasint" json:"expires"`
	// Server makes the node that joins with it a server: it receives the
	// certificate authority's key and holds the control state.
	Server bool   `cbor:"4,keyasint,omitempty" json:"server,omitempty"`
	Note   string `cbor:"5,keyasint,omitempty" json:"note,omitempty"`
	// Used is when a node joined with it, UsedBy that node (0, "":
	// unused).
	Used   int64  `cbor:"6,keyasint,omitempty" json:"used,omitempty"`
	UsedBy string `cbor:"7,keyasint,omitempty" json:"used_by,omitempty"`
}

// NodeRecord is what the control state knows of a node's admission:
// when it joined, whether as a server, and whether it was revoked.
type NodeRecord struct {
	ID      string `cbor:"1,keyasint" json:"id"`
	Joined  int64  `cbor:"2,keyasint" json:"joined"`
	Server  bool   `cbor:"3,keyasint,omitempty" json:"server,omitempty"`
	Revoked int64  `cbor:"4,keyasint,omitempty" json:"revoked,omitempty"`
	Token   string `cbor:"5,keyasint,omitempty" json:"token,omitempty"` // the join token's ID
}

// CreateJoinToken records a join token.
type CreateJoinToken struct {
	Token JoinToken `cbor:"1,keyasint"`
}

// UseJoinToken spends a join token for Node at Time: it works once,
// before it expires, for a node ID no other node holds.
type UseJoinToken struct {
	ID   string `cbor:"1,keyasint"`
	Node string `cbor:"2,keyasint"`
	Time int64  `cbor:"3,keyasint"`
}

// DeleteJoinToken removes a join token, used or not: it can no longer
// be used.
type DeleteJoinToken struct {
	ID string `cbor:"1,keyasint"`
}

// AdmitNode records a node that holds a certificate without a join
// token: the first server, which made the cluster.
type AdmitNode struct {
	Node   string `cbor:"1,keyasint"`
	Server bool   `cbor:"2,keyasint,omitempty"`
	Time   int64  `cbor:"3,keyasint"`
}

// RevokeNode revokes a node at Time: no member talks to it again, and
// its certificate is not renewed. Its ID is never admitted again.
type RevokeNode struct {
	Node string `cbor:"1,keyasint"`
	Time int64  `cbor:"2,keyasint"`
}

// Limits of join tokens and nodes.
const (
	// MaxJoinTokens bounds the join tokens kept; past it, creating one
	// drops used and expired ones, and is refused when there are none.
	MaxJoinTokens = 1024
	// MaxNodes bounds the node records (revoked ones included).
	MaxNodes = 65536
)

// Errors of join tokens and nodes.
var (
	ErrNoJoinToken      = errors.New("controlstate: no join token with that ID")
	ErrJoinTokenUsed    = errors.New("controlstate: the join token was used already")
	ErrJoinTokenExpired = errors.New("controlstate: the join token has expired")
	ErrNodeExists       = errors.New("controlstate: a node with that ID was admitted already")
	ErrNoNode           = errors.New("controlstate: no node with that ID was admitted")
	ErrNodeRevoked      = errors.New("controlstate: the node was revoked")
	ErrTooManyNodes     = errors.New("controlstate: too many nodes")
)

func (s *State) createJoinToken(c *CreateJoinToken) error {
	t := c.Token
	switch {
	case !ValidID(t.ID):
		return fmt.Errorf("%w: join token ID %q", ErrBadCommand, t.ID)
	case len(t.Note) > MaxNoteLength:
		return fmt.Errorf("%w: a note of %d bytes, at most %d", ErrBadCommand, len(t.Note), MaxNoteLength)
	case t.Expires <= t.Created:
		return fmt.Errorf("%w: a join token that expires before it is made", ErrBadCommand)
	case t.Used != 0 || t.UsedBy != "":
		return fmt.Errorf("%w: a join token made used", ErrBadCommand)
	}
	if _, ok := s.joinTokens[t.ID]; ok {
		return fmt.Errorf("%w: join token %q", ErrTokenExists, t.ID)
	}
	if len(s.joinTokens) >= MaxJoinTokens {
		for id, o := range s.joinTokens {
			if o.Used != 0 || o.Expires <= t.Created {
				delete(s.joinTokens, id)
			}
		}
		if len(s.joinTokens) >= MaxJoinTokens {
			return fmt.Errorf("%w: %d join tokens that may still be used; delete some (fabric join-token delete)", ErrTooManyTokens, len(s.joinTokens))
		}
	}
	s.joinTokens[t.ID] = &t
	return nil
}

func (s *State) useJoinToken(c *UseJoinToken) error {
	t, ok := s.joinTokens[c.ID]
	switch {
	case !ok:
		return fmt.Errorf("%w: %q", ErrNoJoinToken, c.ID)
	case t.Used != 0:
		return fmt.Errorf("%w (by node %s)", ErrJoinTokenUsed, t.UsedBy)
	case t.Expires <= c.Time:
		return fmt.Errorf("%w: make another (fabric join-token create)", ErrJoinTokenExpired)
	}
	if err := s.admit(c.Node, t.Server, c.Time, t.ID); err != nil {
		return err
	}
	t.Used, t.UsedBy = c.Time, c.Node
	return nil
}

func (s *State) admit(node string, server bool, now int64, token string) error {
	if !ValidNodeID(node) {
		return fmt.Errorf("%w: node ID %q", ErrBadCommand, node)
	}
	if n, ok := s.nodes[node]; ok {
		if n.Revoked != 0 {
			return fmt.Errorf("%w: %s", ErrNodeRevoked, node)
		}
		return fmt.Errorf("%w: %s (a node that lost its data directory joins under a new ID)", ErrNodeExists, node)
	}
	if len(s.nodes) >= MaxNodes {
		return fmt.Errorf("%w: %d", ErrTooManyNodes, len(s.nodes))
	}
	s.nodes[node] = &NodeRecord{ID: node, Joined: now, Server: server, Token: token}
	return nil
}

func (s *State) revokeNode(c *RevokeNode) error {
	n, ok := s.nodes[c.Node]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoNode, c.Node)
	}
	if n.Revoked == 0 {
		n.Revoked = c.Time
	}
	return nil
}

// ValidNodeID reports whether id may name a node: 1 to 128 bytes of
// letters, digits, '-', '_' and '.' (the ID is a certificate's name,
// and a member's name in the gossip).
func ValidNodeID(id string) bool {
	if id == "" || len(id) > 128 || strings.HasPrefix(id, JoinPeerPrefix) {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// JoinPeerPrefix starts the name in a join token's certificate: a peer
// so named may only ask to join.
const JoinPeerPrefix = "join:"

// JoinTokens returns the join tokens, by ID.
func (s *State) JoinTokens() []JoinToken {
	out := make([]JoinToken, 0, len(s.joinTokens))
	for _, t := range s.joinTokens {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b JoinToken) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// NodeRecords returns the admitted nodes, by ID.
func (s *State) NodeRecords() []NodeRecord {
	out := make([]NodeRecord, 0, len(s.nodes))
	for _, n := range s.nodes {
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b NodeRecord) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// NodeRecord returns what the state knows of a node's admission.
func (s *State) NodeRecord(id string) (NodeRecord, bool) {
	n, ok := s.nodes[id]
	if !ok {
		return NodeRecord{}, false
	}
	return *n, true
}

// Revoked returns the IDs of the revoked nodes, sorted.
func (s *State) Revoked() []string {
	var out []string
	for id, n := range s.nodes {
		if n.Revoked != 0 {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}
