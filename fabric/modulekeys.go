//go:build linux

package fabric

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/wasmfabric/fabric/internal/controlstate"
)

// Module signing keys of tenants (controlstate/keys.go has the rule): a
// tenant with keys runs only modules signed with one. The cluster's
// operator manages the keys (POST, GET /v1/tenants/{name}/keys, DELETE
// /v1/tenants/{name}/keys/{id}); a job's submission and a module's upload
// carry the signature in HeaderModuleSignature, and the control plane's
// state machine checks it, so that no agent can let an unsigned module
// through.

// moduleSignature reads a request's module signature (nil when none).
func moduleSignature(r *http.Request) ([]byte, error) {
	v := r.Header.Get(HeaderModuleSignature)
	if v == "" {
		return nil, nil
	}
	sig, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(sig) > 1024 {
		return nil, fmt.Errorf("%w: %s is not base64 of a signature", ErrBadRequest, HeaderModuleSignature)
	}
	return sig, nil
}

func (a *Agent) handleTenantKeyAdd(w http.ResponseWriter, r *http.Request) {
	var req TenantKeyInfo
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		apiFail(w, fmt.Errorf("%w: the body is {\"key\": base64 of an ed25519 public key, \"note\": text}: %v", ErrBadRequest, err))
		return
	}
	key, err := base64.StdEncoding.DecodeString(req.Key)
	if err != nil {
		apiFail(w, fmt.Errorf("%w: the key is not base64: %v", ErrBadRequest, err))
		return
	}
	c := controlstate.AddTenantKey{Tenant: r.PathValue("name"), Key: key, Note: req.Note, Time: nowMillis()}
	if err := a.propose(r.Context(), controlstate.Command{AddTenantKey: &c}); err != nil {
		apiFail(w, err)
		return
	}
	a.log.Info("tenant's signing key added", "tenant", c.Tenant, "key", controlstate.KeyID(key))
	writeJSON(w, tenantKeyInfo(controlstate.TenantKey{ID: controlstate.KeyID(key), Key: key, Added: c.Time, Note: c.Note}))
}

func (a *Agent) handleTenantKeyList(w http.ResponseWriter, r *http.Request) {
	ans, err := a.control(r.Context(), controlRequest{Op: "tenants"})
	if err != nil {
		apiFail(w, err)
		return
	}
	name := r.PathValue("name")
	for _, t := range ans.Tenants {
		if t.Name == name {
			out := make([]TenantKeyInfo, 0, len(t.Keys))
			for _, k := range t.Keys {
				out = append(out, tenantKeyInfo(k))
			}
			writeJSON(w, out)
			return
		}
	}
	apiFail(w, fmt.Errorf("%w: %q", ErrNoTenant, name))
}

func (a *Agent) handleTenantKeyRemove(w http.ResponseWriter, r *http.Request) {
	c := controlstate.RemoveTenantKey{Tenant: r.PathValue("name"), ID: r.PathValue("id")}
	if err := a.propose(r.Context(), controlstate.Command{RemoveTenantKey: &c}); err != nil {
		apiFail(w, err)
		return
	}
	a.log.Info("tenant's signing key removed", "tenant", c.Tenant, "key", c.ID)
	writeJSON(w, map[string]string{"removed": c.ID})
}

func tenantKeyInfo(k controlstate.TenantKey) TenantKeyInfo {
	return TenantKeyInfo{ID: k.ID, Key: base64.StdEncoding.EncodeToString(k.Key), Added: time.UnixMilli(k.Added).UTC(), Note: k.Note}
}
