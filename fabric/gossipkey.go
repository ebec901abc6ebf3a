//go:build linux

package fabric

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wasmfabric/fabric/internal/membership"
	"github.com/wasmfabric/fabric/internal/secrets"
	"github.com/wasmfabric/fabric/internal/transport"
	"github.com/wasmfabric/fabric/internal/wire"
)

// Gossip key rotation. A server draws a new key and tells every alive
// member that is not revoked, over QUIC (so a revoked node, which still
// holds the old key, is not told): install it, then use it, then remove
// the old one. Each member saves its keys after each step. A member that
// could not be told to install the new key keeps the cluster on both
// keys: the old one is not removed, and the answer names it, for the
// operator to rotate again once it is back, or revoke it.

// msgGossipKey is a step of a rotation, from a server: body a
// gossipKeyStep; answer msgAck.
const msgGossipKey transport.Type = 28

type gossipKeyStep struct {
	Op  string `cbor:"1,keyasint"` // install, use or remove
	Key []byte `cbor:"2,keyasint"`
}

// handleGossipKey takes a step of a rotation on this member.
func (a *Agent) handleGossipKey(body []byte) error {
	var st gossipKeyStep
	if err := wire.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("malformed gossip key step: %w", err)
	}
	if len(st.Key) != secrets.GossipKeySize {
		return fmt.Errorf("a gossip key of %d bytes, want %d", len(st.Key), secrets.GossipKeySize)
	}
	a.gossipKeyMu.Lock()
	defer a.gossipKeyMu.Unlock()
	var err error
	switch st.Op {
	case "install":
		err = a.members.InstallKey(st.Key)
	case "use":
		err = a.members.UseKey(st.Key)
	case "remove":
		err = a.members.RemoveKey(st.Key)
	default:
		return fmt.Errorf("gossip key step %q: install, use or remove", st.Op)
	}
	if err != nil {
		return err
	}
	keys := a.members.Keys()
	return a.cluster.SaveGossipKeys(filepath.Join(a.cfg.DataDir, "cluster"), keys[0], keys[1:])
}

// RotateGossipKey moves the cluster to a new gossip key; on a server.
func (a *Agent) RotateGossipKey(ctx context.Context) (GossipKeyRotation, error) {
	if !a.cluster.CanSign() {
		return GossipKeyRotation{}, fmt.Errorf("fabric: node %s is not a server", a.ID)
	}
	a.rotateMu.Lock()
	defer a.rotateMu.Unlock()
	// The revoked nodes as of now, not of the last poll: they must not
	// be told.
	ans, err := a.control(ctx, controlRequest{Op: "revoked"})
	if err != nil {
		return GossipKeyRotation{}, err
	}
	a.setRevoked(ans.Revoked)
	old := slices.Clone(a.members.Keys()[0])
	fresh := make([]byte, secrets.GossipKeySize)
	if _, err := rand.Read(fresh); err != nil {
		return GossipKeyRotation{}, err
	}
	var targets []string
	a.tableMu.RLock()
	for id, m := range a.table {
		if m.Status == membership.Alive || m.Status == membership.Suspect || id == a.ID {
			targets = append(targets, id)
		}
	}
	a.tableMu.RUnlock()
	if !slices.Contains(targets, a.ID) {
		targets = append(targets, a.ID)
	}
	slices.Sort(targets)
	step := func(node, op string, key []byte) error {
		body := mustMarshal(gossipKeyStep{Op: op, Key: key})
		if node == a.ID {
			return a.handleGossipKey(body)
		}
		addr, err := a.addrOf(node)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, controlTimeout)
		defer cancel()
		_, _, err = a.quic.Call(cctx, addr, msgGossipKey, body)
		return err
	}
	var out GossipKeyRotation
	var told []string
	for _, n := range targets {
		if a.isRevoked(n) {
			continue
		}
		if err := step(n, "install", fresh); err != nil {
			a.warnf("fabric agent: gossip key rotation: node %s did not install the new key: %v", n, err)
			out.Missed = append(out.Missed, n)
			continue
		}
		told = append(told, n)
	}
	if !slices.Contains(told, a.ID) {
		return out, errors.New("fabric: this server could not install the new gossip key")
	}
	for _, n := range told {
		if err := step(n, "use", fresh); err != nil {
			a.warnf("fabric agent: gossip key rotation: node %s did not switch to the new key: %v", n, err)
		}
	}
	out.Nodes = told
	if len(out.Missed) > 0 {
		out.OldKeyKept = true
		return out, nil
	}
	for _, n := range told {
		if err := step(n, "remove", old); err != nil {
			a.warnf("fabric agent: gossip key rotation: node %s did not drop the old key: %v", n, err)
		}
	}
	a.logf("fabric agent: the gossip key was rotated on %d nodes", len(told))
	return out, nil
}

func (a *Agent) handleRotateGossipKey(w http.ResponseWriter, r *http.Request) {
	var out GossipKeyRotation
	var err error
	if a.cluster.CanSign() {
		out, err = a.RotateGossipKey(r.Context())
	} else {
		var ans controlAnswer
		if ans, err = a.control(r.Context(), controlRequest{Op: "rotate-gossip-key"}); err == nil {
			err = wire.Unmarshal(ans.Grant, &out)
		}
	}
	if err != nil {
		apiFail(w, err)
		return
	}
	writeJSON(w, out)
}

// rotateFor rotates the gossip key on the leader for a request a member
// relayed.
func (a *Agent) rotateFor(ctx context.Context, p controlPrincipal) controlAnswer {
	if !p.server && (p.caller == nil || !p.caller.cluster) {
		return answerErr(fmt.Errorf("%w: rotating the gossip key takes a cluster admin token", errNotAllowed))
	}
	out, err := a.RotateGossipKey(ctx)
	if err != nil {
		return answerErr(err)
	}
	return controlAnswer{Grant: mustMarshal(out)}
}

// msgGossipKeys asks a server for the gossip keys: body none; answer the
// keys (CBOR), the one in use first. A member that was away during a
// rotation asks at start, before it gossips.
const msgGossipKeys transport.Type = 29

// gossipKeys answers msgGossipKeys.
func (a *Agent) gossipKeys() ([]byte, error) {
	if !a.cluster.CanSign() {
		return nil, fmt.Errorf("node %s is not a server", a.ID)
	}
	return wire.Marshal(a.members.Keys())
}

// catchUpGossipKeys asks the servers last known for the gossip keys, and
// takes them when the one in use is not this node's: it was away during a
// rotation. It returns the keys to start gossip with (primary first).
func (a *Agent) catchUpGossipKeys(primary []byte, extra [][]byte) ([]byte, [][]byte) {
	deadline := time.Now().Add(5 * time.Second) // servers that are down do not hold the start long
	for _, addr := range a.serverAddrs {
		if time.Now().After(deadline) {
			break
		}
		ctx, cancel := context.WithTimeout(a.agentCtx, 2*time.Second)
		_, b, err := a.quic.Call(ctx, addr, msgGossipKeys, nil)
		cancel()
		var keys [][]byte
		if err != nil || wire.Unmarshal(b, &keys) != nil || len(keys) == 0 || len(keys[0]) != secrets.GossipKeySize {
			continue
		}
		if bytes.Equal(keys[0], primary) {
			return primary, extra
		}
		if err := a.cluster.SaveGossipKeys(filepath.Join(a.cfg.DataDir, "cluster"), keys[0], keys[1:]); err != nil {
			a.warnf("fabric agent: saving the gossip keys: %v", err)
		}
		a.logf("fabric agent: the gossip key was rotated while this node was away; took the new one from %s", addr)
		return keys[0], keys[1:]
	}
	return primary, extra
}

// rememberServers saves the alive servers' QUIC addresses, when they
// changed, for catchUpGossipKeys at the next start.
func (a *Agent) rememberServers() {
	var addrs []string
	a.tableMu.RLock()
	for _, m := range a.table {
		if m.Role == "server" && m.Status == membership.Alive && m.QUIC != "" {
			addrs = append(addrs, m.QUIC)
		}
	}
	a.tableMu.RUnlock()
	slices.Sort(addrs)
	a.serverAddrsMu.Lock()
	defer a.serverAddrsMu.Unlock()
	if len(addrs) == 0 || slices.Equal(addrs, a.serverAddrs) {
		return
	}
	a.serverAddrs = addrs
	_ = os.WriteFile(filepath.Join(a.cfg.DataDir, "cluster", serversFile), []byte(strings.Join(addrs, "\n")+"\n"), 0o600)
}
