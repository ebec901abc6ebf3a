//go:build linux

package fabric

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/wire"
)

func (a *Agent) handleJoinTokenCreate(w http.ResponseWriter, r *http.Request) {
	var req JoinTokenRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		apiFail(w, fmt.Errorf("%w: the body is a JoinTokenRequest, {\"ttl\", \"server\", \"note\"}: %v", ErrBadRequest, err))
		return
	}
	if len(req.Note) > controlstate.MaxNoteLength {
		apiFail(w, fmt.Errorf("%w: a note of %d bytes, at most %d", ErrBadRequest, len(req.Note), controlstate.MaxNoteLength))
		return
	}
	o := JoinTokenOptions(req)
	var out NewJoinToken
	var err error
	if a.cluster.CanSign() {
		out.Token, out.JoinTokenInfo, err = a.CreateJoinToken(r.Context(), o)
	} else {
		// Only servers hold the CA's key: the leader makes it.
		var ans controlAnswer
		if ans, err = a.control(r.Context(), controlRequest{Op: "create-join-token", Command: mustMarshal(o)}); err == nil {
			if len(ans.Joins) != 1 {
				err = fmt.Errorf("fabric: the leader answered with %d join tokens", len(ans.Joins))
			} else {
				out.Token, out.JoinTokenInfo = ans.Secret, joinTokenInfo(ans.Joins[0], time.Now())
			}
		}
	}
	if err != nil {
		apiFail(w, err)
		return
	}
	a.log.Info("join token created", "join_token", out.ID, "server", out.Server, "expires", out.Expires) // never the secret
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	writeJSON(w, out)
}

// createJoinTokenFor makes a join token on the leader for a request a
// member relayed.
func (a *Agent) createJoinTokenFor(ctx context.Context, p controlPrincipal, req controlRequest) controlAnswer {
	if !p.server && (p.caller == nil || !p.caller.cluster) {
		return answerErr(fmt.Errorf("%w: a join token takes a cluster admin token", errNotAllowed))
	}
	var o JoinTokenOptions
	if err := wire.Unmarshal(req.Command, &o); err != nil {
		return answerErr(fmt.Errorf("%w: %v", controlstate.ErrBadCommand, err))
	}
	tok, info, err := a.CreateJoinToken(ctx, o)
	if err != nil {
		return answerErr(err)
	}
	return controlAnswer{Secret: tok, Joins: []controlstate.JoinToken{{ID: info.ID, Created: info.Created.UnixMilli(), Expires: info.Expires.UnixMilli(), Server: info.Server, Note: info.Note}}}
}

func (a *Agent) handleJoinTokenList(w http.ResponseWriter, r *http.Request) {
	ans, err := a.control(r.Context(), controlRequest{Op: "join-tokens"})
	if err != nil {
		apiFail(w, err)
		return
	}
	now := time.Now()
	out := make([]JoinTokenInfo, 0, len(ans.Joins))
	for _, t := range ans.Joins {
		out = append(out, joinTokenInfo(t, now))
	}
	writeJSON(w, out)
}

func (a *Agent) handleJoinTokenDelete(w http.ResponseWriter, r *http.Request) {
	if err := a.propose(r.Context(), controlstate.Command{DeleteJoinToken: &controlstate.DeleteJoinToken{ID: r.PathValue("id")}}); err != nil {
		apiFail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleAdmitted lists the nodes the cluster admitted, revoked ones too.
func (a *Agent) handleAdmitted(w http.ResponseWriter, r *http.Request) {
	ans, err := a.control(r.Context(), controlRequest{Op: "nodes"})
	if err != nil {
		apiFail(w, err)
		return
	}
	out := make([]NodeRecordInfo, 0, len(ans.Nodes))
	for _, n := range ans.Nodes {
		ni := NodeRecordInfo{ID: n.ID, Joined: time.UnixMilli(n.Joined).UTC(), Server: n.Server}
		if n.Revoked != 0 {
			ni.Revoked = time.UnixMilli(n.Revoked).UTC()
		}
		out = append(out, ni)
	}
	writeJSON(w, out)
}

// handleRevoke revokes a node: every member refuses it from then on.
func (a *Agent) handleRevoke(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == a.ID {
		apiFail(w, fmt.Errorf("%w: node %s serves this request: revoke it through another agent", ErrBadRequest, id))
		return
	}
	if err := a.propose(r.Context(), controlstate.Command{RevokeNode: &controlstate.RevokeNode{Node: id, Time: nowMillis()}}); err != nil {
		apiFail(w, err)
		return
	}
	a.log.Info("node revoked", "node", id)
	if m := a.revoked.Load(); m == nil || !(*m)[id] {
		var ids []string
		if m != nil {
			for k := range *m {
				ids = append(ids, k)
			}
		}
		a.setRevoked(append(ids, id)) // at once here; the others within a poll
	}
	w.WriteHeader(http.StatusNoContent)
}
