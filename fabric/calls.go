//go:build linux

package fabric

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/wasmfabric/fabric/internal/abi"
	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/core"
	"github.com/wasmfabric/fabric/internal/objects"
	"github.com/wasmfabric/fabric/internal/peerwire"
	"github.com/wasmfabric/fabric/internal/scheduler"
	"github.com/wasmfabric/fabric/internal/wire"
)

func moduleInfo(m controlstate.Module, c caller) ModuleInfo {
	mi := ModuleInfo{Digest: m.Digest, Size: m.Size, Name: m.Name, Added: time.UnixMilli(m.Added).UTC(), Nodes: m.Nodes, Uploaded: m.Uploaded}
	if c.cluster {
		mi.Tenants = m.Tenants // a tenant does not learn who else stored it
	}
	return mi
}

// callPeerPrefix names the pseudo-peers of calls: a call's task is run by
// the node as one a peer sent, and what the node sends that peer back is
// the call's.
const callPeerPrefix = "call:"

// maxCallOutput bounds the output a call keeps.
const maxCallOutput = 1 << 20

// pendingCall is a call waiting for its task's answer.
type pendingCall struct {
	task objects.ID
	done chan *peerwire.TaskDone
	mu   sync.Mutex
	out  bytes.Buffer
}

// callMessage takes a message the node sent a call's pseudo-peer.
func (a *Agent) callMessage(peer string, m peerwire.Message) {
	a.callsMu.Lock()
	c := a.calls[peer]
	a.callsMu.Unlock()
	if c == nil {
		return
	}
	switch m := m.(type) {
	case *peerwire.TaskDone:
		if m.Task == c.task {
			select {
			case c.done <- m:
			default:
			}
		}
	case *peerwire.Output:
		c.mu.Lock()
		if c.out.Len()+len(m.Data) <= maxCallOutput {
			c.out.Write(m.Data)
		}
		c.mu.Unlock()
	}
}

// Call runs one task function of a module this node holds, with args
// (CBOR values), on this node, for tenant ("": the cluster's operator:
// the call's job finds names in the tenant's namespaces), and returns its
// value (CBOR) and output.
func (a *Agent) Call(ctx context.Context, tenant, digest, function string, args [][]byte) ([]byte, string, error) {
	var raw [8]byte
	_, _ = rand.Read(raw[:])
	peer := callPeerPrefix + hex.EncodeToString(raw[:])
	job := string(newJobID())
	grant := a.grantFor(ctx, job, tenant, peer, "", digest)
	if !a.node.HasModule(digest) {
		if err := a.node.pullModuleFrom(ctx, digest, a.moduleHolders(ctx, digest), encodeModuleProof(job, tenant, peer, digest, grant)); err != nil {
			return nil, "", fmt.Errorf("%w: %s: %v", ErrNoModuleHere, digest, err)
		}
	}
	a.node.touchModule(digest)
	c := &pendingCall{done: make(chan *peerwire.TaskDone, 1)}
	_, _ = rand.Read(c.task[:16])
	a.callsMu.Lock()
	a.calls[peer] = c
	a.callsMu.Unlock()
	from := scheduler.NodeID(peer)
	defer func() {
		a.node.step(core.PeerMessage{From: from, Msg: &peerwire.EndJob{Job: job}})
		a.callsMu.Lock()
		delete(a.calls, peer)
		a.callsMu.Unlock()
	}()
	spec := abi.TaskSpec{Func: function}
	for _, v := range args {
		spec.Args = append(spec.Args, abi.Arg{Value: v})
	}
	a.node.step(core.PeerMessage{From: from, Msg: &peerwire.RunTask{Job: job, Root: peer, Digest: digest, What: peerwire.RunPlainTask,
		Task: c.task, Attempt: 1, Spec: spec.AppendCBOR(nil), Tenant: tenant, Grant: grant}})
	var m *peerwire.TaskDone
	select {
	case m = <-c.done:
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
	c.mu.Lock()
	out := c.out.String()
	c.mu.Unlock()
	switch {
	case m.Refused != "":
		return nil, out, fmt.Errorf("%w: %s", ErrBadRequest, m.Refused)
	case m.Error != nil:
		var ev abi.ErrorValue
		_ = wire.Unmarshal(m.Error, &ev)
		return nil, out, &CallError{Kind: string(ev.Kind), Message: ev.Message}
	case len(m.Results) != 1 || m.Results[0].Held:
		return nil, out, fmt.Errorf("fabric: the function's result is too large for a call (%d values); return less, or run it in a job", len(m.Results))
	}
	return m.Results[0].Value, out, nil
}

// jsonToCBOR converts a call's JSON arguments (an array) to CBOR values:
// whole numbers become integers, others floats.
func jsonToCBOR(s string) ([][]byte, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var vals []any
	if err := dec.Decode(&vals); err != nil {
		return nil, fmt.Errorf("%w: --args must be a JSON array of the function's arguments: %v", ErrBadRequest, err)
	}
	out := make([][]byte, 0, len(vals))
	for _, v := range vals {
		b, err := wire.Marshal(numbers(v))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		out = append(out, b)
	}
	return out, nil
}

func numbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case []any:
		for i := range v {
			v[i] = numbers(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = numbers(v[k])
		}
	}
	return v
}

// cborToJSON converts a function's CBOR value to JSON.
func cborToJSON(b []byte) (json.RawMessage, error) {
	var v any
	if err := wire.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("fabric: the function returned undecodable CBOR: %w", err)
	}
	out, err := json.Marshal(jsonable(v))
	if err != nil {
		return nil, fmt.Errorf("fabric: the function's value has no JSON form: %w", err)
	}
	return out, nil
}

func jsonable(v any) any {
	switch v := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i := range v {
			v[i] = jsonable(v[i])
		}
		return v
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Sprint(v)
		}
	case []byte:
		return v // base64, as encoding/json writes bytes
	}
	return v
}

// handleModuleUpload stores an uploaded module and records it.
func (a *Agent) handleModuleUpload(w http.ResponseWriter, r *http.Request) {
	sig, err := moduleSignature(r)
	if err != nil {
		apiFail(w, err)
		return
	}
	digest, ok := a.receiveModule(w, r)
	if !ok {
		return
	}
	name := r.URL.Query().Get("name")
	if len(name) > 256 {
		name = name[:256]
	}
	a.node.touchModule(digest)
	err = a.propose(r.Context(), controlstate.Command{AddModule: &controlstate.AddModule{Digest: digest, Size: a.node.moduleSize(digest), Name: name, Node: a.ID, Time: nowMillis(), Uploaded: true,
		Tenant: callerOf(r).tenant(), Signature: sig}})
	a.wakeCollector()
	if err != nil {
		apiFail(w, err)
		return
	}
	ans, err := a.control(r.Context(), controlRequest{Op: "module", ID: digest})
	if err != nil || len(ans.Modules) != 1 {
		apiFail(w, errors.Join(err, ErrNoModuleHere))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(moduleInfo(ans.Modules[0], callerOf(r)))
}

func (a *Agent) handleModuleList(w http.ResponseWriter, r *http.Request) {
	ans, err := a.control(r.Context(), controlRequest{Op: "modules"})
	if err != nil {
		apiFail(w, err)
		return
	}
	c := callerOf(r)
	out := make([]ModuleInfo, 0, len(ans.Modules))
	for _, m := range ans.Modules {
		if c.seesModule(m) {
			out = append(out, moduleInfo(m, c))
		}
	}
	writeJSON(w, out)
}

func (a *Agent) handleModuleDelete(w http.ResponseWriter, r *http.Request) {
	digest := r.PathValue("digest")
	if !controlstate.ValidDigest(digest) {
		apiFail(w, fmt.Errorf("%w: %q is not a module digest (64 hex digits)", ErrBadRequest, digest))
		return
	}
	if _, err := a.tenantModule(r, digest, true); err != nil {
		apiFail(w, err)
		return
	}
	// The cluster's operator deletes the record; a tenant its claim (the
	// record goes with the last one).
	if err := a.propose(r.Context(), controlstate.Command{DeleteModule: &controlstate.DeleteModule{Digest: digest, Tenant: callerOf(r).tenant()}}); err != nil {
		apiFail(w, err)
		return
	}
	// Copies on the nodes go when their disk use passes the limit; this
	// node's goes now, if the record went.
	if _, err := a.control(r.Context(), controlRequest{Op: "module", ID: digest}); errors.Is(err, ErrNoModuleHere) {
		a.node.removeModule(digest)
	}
	writeJSON(w, map[string]string{"deleted": digest})
}

// handleCall runs one task function of an uploaded module: the body is
// JSON, {"function": NAME, "args": [...]}; the answer a CallResult.
func (a *Agent) handleCall(w http.ResponseWriter, r *http.Request) {
	if a.draining.Load() {
		apiFail(w, ErrDraining)
		return
	}
	digest := r.PathValue("digest")
	if !controlstate.ValidDigest(digest) {
		apiFail(w, fmt.Errorf("%w: %q is not a module digest (64 hex digits)", ErrBadRequest, digest))
		return
	}
	if _, err := a.tenantModule(r, digest, false); err != nil {
		apiFail(w, err)
		return
	}
	var req struct {
		Function string          `json:"function"`
		Args     json.RawMessage `json:"args"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<20)).Decode(&req); err != nil || req.Function == "" {
		apiFail(w, fmt.Errorf("%w: the body must be JSON {\"function\": NAME, \"args\": [...]}: %v", ErrBadRequest, err))
		return
	}
	args, err := jsonToCBOR(string(req.Args))
	if err != nil {
		apiFail(w, err)
		return
	}
	v, out, err := a.Call(r.Context(), callerOf(r).tenant(), digest, req.Function, args)
	var ce *CallError
	if errors.As(err, &ce) {
		apiError(w, http.StatusUnprocessableEntity, err.Error()+outputNote(out))
		return
	}
	if err != nil {
		apiFail(w, err)
		return
	}
	js, err := cborToJSON(v)
	if err != nil {
		apiError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	writeJSON(w, CallResult{Value: js, Node: a.ID, Output: out})
}

func outputNote(out string) string {
	if out == "" {
		return ""
	}
	return "\noutput:\n" + out
}
