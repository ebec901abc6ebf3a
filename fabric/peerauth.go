//go:build linux

package fabric

import (
	"fmt"
	"strings"

	"github.com/wasmfabric/fabric/internal/secrets"
	"github.com/wasmfabric/fabric/internal/transport"
)

// Who may send an agent each message type. Every type an agent answers
// has a rule here, checked in one place (peerMay) before its handler
// runs; TestPeerRules fails for a type without one. A rule says who may
// send the message at all; what the message then may touch is checked by
// whoever holds the thing: the control plane's leader for the control
// state (serveControl), the core for a job's share (a node gets a job's
// objects and messages only while it works for the job), the driver's
// node for a job's log (the caller's own token travels with the request).

// peerSender is a class of peers.
type peerSender uint8

const (
	// joining is a node that shows a join token's certificate: it may
	// only ask to be admitted.
	joining peerSender = iota + 1
	// member is any admitted node that is not revoked.
	member
	// server is a member whose certificate makes it a server.
	server
)

func (s peerSender) String() string {
	return map[peerSender]string{joining: "a joining node", member: "a member", server: "a server"}[s]
}

// peerRule is who may send a message type, and what else is checked.
type peerRule struct {
	from peerSender
	// why says what the handler checks past the sender's class.
	why string
}

// peerRules are the rules of every message type an agent takes:
// requests (transport.Handler), streams and object pulls.
var peerRules = map[transport.Type]peerRule{
	msgPing:            {member, "answers the node's ID only"},
	msgBatch:           {member, "each message is checked by the core against the jobs the sender works for"},
	msgControl:         {member, "the leader checks each operation: a member's own records, or the caller's token that it relays"},
	msgJobStop:         {member, "stops a driver only once the control state says the job ended"},
	msgJobRun:          {member, "starts a driver only when the control state says it is pending on this node"},
	msgModuleCopy:      {member, "copies only a module the control state records"},
	msgJobLogs:         {member, "a log is read with the caller's token, checked here; removed only once the job is deleted"},
	msgJoin:            {joining, "spends the join token in the control state, once"},
	msgRenew:           {member, "signed for the sender's own node ID while it is not revoked"},
	msgRaft:            {server, "raft between servers"},
	msgGossipKey:       {server, "a step of a gossip key rotation, which a server drives"},
	msgGossipKeys:      {member, "a server answers the gossip keys to a member that is not revoked (it was away during a rotation)"},
	msgModuleProof:     {member, "a grant for a module, rooted at the sender or a call, lets it copy the module for a while"},
	msgTasks:           {member, "the state API: answered with the records of the tenants the relayed token sees, authenticated on the leader"},
	msgServe:           {member, "a request for a deployment's replicas hosted here (the sending ingress checked its token), or what this node hosts"},
	msgServeStream:     {member, "a request for a deployment's replicas hosted here whose response streams (the sending ingress checked its token)"},
	transport.TypePull: {member, "an object is served only to a node it was sent to"},
}

// peerMay checks a message type's rule for a peer (the name in its
// certificate, which the CA signed and revocation did not refuse).
func (a *Agent) peerMay(peer string, t transport.Type) error {
	rule, ok := peerRules[t]
	if !ok {
		return fmt.Errorf("unknown message type %d (is the peer a newer version?)", t)
	}
	isJoin := strings.HasPrefix(peer, secrets.JoinPrefix)
	switch {
	case a.isRevoked(peer):
		return fmt.Errorf("%w: %s", ErrRevoked, peer)
	case rule.from == joining && isJoin, rule.from == member && !isJoin && peer != "":
		return nil
	case rule.from == server && !isJoin && a.isServerPeer(peer):
		return nil
	}
	return fmt.Errorf("message type %d takes %s; %q is not one", t, rule.from, peer)
}
