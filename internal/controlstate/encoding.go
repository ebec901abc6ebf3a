package controlstate

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// MaxCommand bounds an encoded command.
const MaxCommand = 1 << 20

var (
	encMode, _ = cbor.CoreDetEncOptions().EncMode()
	decMode, _ = cbor.DecOptions{
		MaxArrayElements: 1 << 20, MaxMapPairs: 1 << 10, MaxNestedLevels: 8,
		DupMapKey: cbor.DupMapKeyEnforcedAPF, ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
)

// EncodeCommand encodes a command for the raft log.
func EncodeCommand(c Command) ([]byte, error) { return encMode.Marshal(c) }

// DecodeCommand decodes a command from the raft log or from a peer.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if len(b) > MaxCommand {
		return c, fmt.Errorf("%w: %d bytes", ErrBadCommand, len(b))
	}
	if err := decMode.Unmarshal(b, &c); err != nil {
		return Command{}, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	return c, nil
}

// snapshot is the state's encoded form.
type snapshot struct {
	Jobs     []Job           `cbor:"1,keyasint"`
	Modules  []Module        `cbor:"2,keyasint"`
	Requests []requestResult `cbor:"3,keyasint,omitempty"` // oldest first
	Names    []ActorName     `cbor:"4,keyasint,omitempty"`
	Tenants  []Tenant        `cbor:"5,keyasint,omitempty"`
	Tokens   []Token         `cbor:"6,keyasint,omitempty"`
	Joins    []JoinToken     `cbor:"7,keyasint,omitempty"`
	Nodes    []NodeRecord    `cbor:"8,keyasint,omitempty"`
	Deploys  []Deployment    `cbor:"9,keyasint,omitempty"`
}

// Snapshot encodes the whole state.
func (s *State) Snapshot() ([]byte, error) {
	snap := snapshot{Jobs: s.Jobs(nil), Modules: s.Modules(), Names: s.Names(nil), Tenants: s.Tenants(), Tokens: s.tokensForSnapshot(),
		Joins: s.JoinTokens(), Nodes: s.NodeRecords(), Deploys: s.Deployments()}
	for _, name := range s.order {
		snap.Requests = append(snap.Requests, s.requests[name])
	}
	return encMode.Marshal(snap)
}

// Restore returns the state a Snapshot encoded.
func Restore(b []byte) (*State, error) {
	var snap snapshot
	if err := decMode.Unmarshal(b, &snap); err != nil {
		return nil, fmt.Errorf("controlstate: malformed snapshot: %w", err)
	}
	s := New()
	for i := range snap.Jobs {
		j := snap.Jobs[i]
		s.jobs[j.ID] = &j
	}
	for i := range snap.Modules {
		m := snap.Modules[i]
		s.modules[m.Digest] = &m
	}
	for i := range snap.Names {
		n := snap.Names[i]
		s.names[nameKey(n.Group, n.Tenant, n.Namespace, n.Job, n.Name)] = &n
	}
	for i := range snap.Tenants {
		t := snap.Tenants[i]
		s.tenants[t.Name] = &t
	}
	for i := range snap.Tokens {
		t := snap.Tokens[i]
		s.tokens[t.ID] = &t
		s.tokenHashes[string(t.Hash)] = t.ID
	}
	for i := range snap.Joins {
		t := snap.Joins[i]
		s.joinTokens[t.ID] = &t
	}
	for i := range snap.Nodes {
		n := snap.Nodes[i]
		s.nodes[n.ID] = &n
	}
	for i := range snap.Deploys {
		d := snap.Deploys[i]
		s.deployments[d.Key] = &d
	}
	for _, r := range snap.Requests {
		if _, dup := s.requests[r.Name]; dup || len(s.order) >= MaxRequests {
			continue
		}
		s.requests[r.Name] = r
		s.order = append(s.order, r.Name)
	}
	return s, nil
}
