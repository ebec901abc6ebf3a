//go:build linux

package fabric

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/scheduler"
)

// Tenants and their API tokens, recorded in the control state. A token's
// secret is made here, shown once in the answer that makes it, and never
// stored: the state keeps its SHA-256. These routes take the cluster's
// API token (the operator's); tenants' tokens are checked against the
// state by Authenticate.

// tokenPrefix starts every tenant token, so that one found in a log or a
// repository is recognized as a Fabric token.
const tokenPrefix = "fabric_"

// maxTokenTTL bounds a token's life: ten years.
const maxTokenTTL = 10 * 365 * 24 * time.Hour

// newTokenSecret makes a token's ID and secret: the ID is public (it
// names the token in listings and revocations), the secret is 256 random
// bits, and the token is both, so that a token says which it is.
func newTokenSecret() (id, token string) {
	var idb [6]byte
	var sec [32]byte
	_, _ = rand.Read(idb[:])
	_, _ = rand.Read(sec[:])
	id = hex.EncodeToString(idb[:])
	return id, tokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(sec[:])
}

// maxAuthChecks bounds the token checks an agent runs at once.
const maxAuthChecks = 64

// wellFormedToken reports whether s has a tenant token's form.
func wellFormedToken(s string) bool {
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok || len(rest) != 12+1+43 || rest[12] != '_' {
		return false
	}
	if _, err := hex.DecodeString(rest[:12]); err != nil {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(rest[13:])
	return err == nil
}

// tokenHash is what the state keeps of a token.
func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

func tenantInfo(t controlstate.Tenant) TenantInfo {
	q := t.Quota
	return TenantInfo{Name: t.Name, Created: time.UnixMilli(t.Created).UTC(), MaxJobs: q.Jobs,
		MaxCPUs: float64(q.CPU) / scheduler.Unit, MaxGPUs: float64(q.GPU) / scheduler.Unit, MaxMemory: q.Memory, MaxTasks: q.Tasks,
		MaxObjectStore: q.ObjectStore, MaxSpill: q.Spill, MaxActors: q.Actors}
}

// quotaOf is the quota a request asks for.
func quotaOf(t TenantInfo) (controlstate.Quota, error) {
	if t.MaxCPUs < 0 || t.MaxGPUs < 0 || t.MaxMemory < 0 || t.MaxObjectStore < 0 || t.MaxSpill < 0 || t.MaxCPUs > 1e9 || t.MaxGPUs > 1e9 {
		return controlstate.Quota{}, fmt.Errorf("%w: a quota is 0 (no bound) or more", ErrBadRequest)
	}
	return controlstate.Quota{Jobs: t.MaxJobs, CPU: scheduler.Quantity(t.MaxCPUs), GPU: scheduler.Quantity(t.MaxGPUs), Memory: t.MaxMemory, Tasks: t.MaxTasks,
		ObjectStore: t.MaxObjectStore, Spill: t.MaxSpill, Actors: t.MaxActors}, nil
}

func tokenInfo(t controlstate.Token, now time.Time) TokenInfo {
	ti := TokenInfo{ID: t.ID, Tenant: t.Tenant, Role: string(t.Role), Created: time.UnixMilli(t.Created).UTC(), Note: t.Note, State: "active"}
	if t.Expires != 0 {
		ti.Expires = time.UnixMilli(t.Expires).UTC()
		if !now.Before(ti.Expires) {
			ti.State = "expired"
		}
	}
	if t.Revoked != 0 {
		ti.Revoked, ti.State = time.UnixMilli(t.Revoked).UTC(), "revoked"
	}
	return ti
}

func (a *Agent) handleTenantCreate(w http.ResponseWriter, r *http.Request) {
	var req TenantInfo
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil || !controlstate.ValidID(req.Name) {
		apiFail(w, fmt.Errorf("%w: the body is {\"name\": NAME, \"max_jobs\": N}, a name of 1 to 64 letters, digits, '-', '_' or '.' (got %q)", ErrBadRequest, req.Name))
		return
	}
	q, err := quotaOf(req)
	if err != nil {
		apiFail(w, err)
		return
	}
	c := controlstate.CreateTenant{Name: req.Name, Time: nowMillis(), Quota: q}
	if err := a.propose(r.Context(), controlstate.Command{CreateTenant: &c}); err != nil {
		apiFail(w, err)
		return
	}
	a.log.Info("tenant created", "tenant", req.Name, "max_jobs", req.MaxJobs)
	w.WriteHeader(http.StatusCreated)
	writeJSON(w, tenantInfo(controlstate.Tenant{Name: c.Name, Created: c.Time, Quota: c.Quota}))
}

func (a *Agent) handleTenantQuota(w http.ResponseWriter, r *http.Request) {
	var req TenantInfo
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		apiFail(w, fmt.Errorf("%w: the body is {\"max_jobs\", \"max_cpus\", \"max_gpus\", \"max_memory\", \"max_tasks\"}: %v", ErrBadRequest, err))
		return
	}
	name := r.PathValue("name")
	q, err := quotaOf(req)
	if err != nil {
		apiFail(w, err)
		return
	}
	c := controlstate.SetQuota{Name: name, Quota: q}
	if err := a.propose(r.Context(), controlstate.Command{SetQuota: &c}); err != nil {
		apiFail(w, err)
		return
	}
	a.log.Info("tenant's quota set", "tenant", name, "max_jobs", req.MaxJobs, "max_cpus", req.MaxCPUs, "max_gpus", req.MaxGPUs, "max_memory", req.MaxMemory, "max_tasks", req.MaxTasks)
	out := tenantInfo(controlstate.Tenant{Name: name, Quota: q})
	out.Created = time.Time{}
	writeJSON(w, out)
}

func (a *Agent) handleTenantList(w http.ResponseWriter, r *http.Request) {
	ans, err := a.control(r.Context(), controlRequest{Op: "tenants"})
	if err != nil {
		apiFail(w, err)
		return
	}
	out := make([]TenantInfo, 0, len(ans.Tenants))
	for _, t := range ans.Tenants {
		out = append(out, tenantInfo(t))
	}
	writeJSON(w, out)
}

func (a *Agent) handleTenantDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := a.propose(r.Context(), controlstate.Command{DeleteTenant: &controlstate.DeleteTenant{Name: name}}); err != nil {
		apiFail(w, err)
		return
	}
	a.log.Info("tenant deleted, with its tokens", "tenant", name)
	writeJSON(w, map[string]string{"deleted": name})
}

func (a *Agent) handleTokenCreate(w http.ResponseWriter, r *http.Request) {
	var req TokenRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		apiFail(w, fmt.Errorf("%w: the body is a TokenRequest, {\"tenant\", \"role\", \"ttl\", \"note\"}: %v", ErrBadRequest, err))
		return
	}
	switch {
	case !controlstate.ValidRole(controlstate.Role(req.Role)):
		apiFail(w, fmt.Errorf("%w: role %q: one of admin, operator or user", ErrBadRequest, req.Role))
		return
	case req.TTL < 0 || req.TTL > maxTokenTTL:
		apiFail(w, fmt.Errorf("%w: a time to live of %s: between 0 (no expiry) and %s", ErrBadRequest, req.TTL, maxTokenTTL))
		return
	case len(req.Note) > controlstate.MaxNoteLength:
		apiFail(w, fmt.Errorf("%w: a note of %d bytes, at most %d", ErrBadRequest, len(req.Note), controlstate.MaxNoteLength))
		return
	}
	id, secret := newTokenSecret()
	now := time.Now()
	t := controlstate.Token{ID: id, Tenant: req.Tenant, Role: controlstate.Role(req.Role), Hash: tokenHash(secret), Created: now.UnixMilli(), Note: req.Note}
	if req.TTL > 0 {
		t.Expires = now.Add(req.TTL).UnixMilli()
	}
	if err := a.propose(r.Context(), controlstate.Command{CreateToken: &controlstate.CreateToken{Token: t}}); err != nil {
		apiFail(w, err)
		return
	}
	a.log.Info("token created", "tenant", t.Tenant, "token", id, "role", t.Role) // never the secret
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	writeJSON(w, NewToken{TokenInfo: tokenInfo(t, now), Token: secret})
}

func (a *Agent) handleTokenList(w http.ResponseWriter, r *http.Request) {
	ans, err := a.control(r.Context(), controlRequest{Op: "tokens", ID: r.URL.Query().Get("tenant")})
	if err != nil {
		apiFail(w, err)
		return
	}
	now := time.Now()
	out := make([]TokenInfo, 0, len(ans.Tokens))
	for _, t := range ans.Tokens {
		out = append(out, tokenInfo(t, now))
	}
	writeJSON(w, out)
}

func (a *Agent) handleTokenRevoke(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.propose(r.Context(), controlstate.Command{RevokeToken: &controlstate.RevokeToken{ID: id, Time: nowMillis()}}); err != nil {
		apiFail(w, err)
		return
	}
	a.log.Info("token revoked", "token", id)
	writeJSON(w, map[string]string{"revoked": id})
}

// authenticate checks a tenant's token against the control state, on
// the leader, at every request (so that a revocation holds on every agent
// at once): the token it is, if it works now. A token that does not is
// ErrUnauthorized, saying why.
func (a *Agent) authenticate(r *http.Request, token string) (controlstate.Token, error) {
	if !wellFormedToken(token) {
		return controlstate.Token{}, fmt.Errorf("%w: unknown token (not an API token: they are %q, 12 hex digits, '_' and 43 more characters)", ErrUnauthorized, tokenPrefix)
	}
	// Anyone who reaches the API may present a token: bound the reads
	// they cause on the leader.
	select {
	case a.authSlots <- struct{}{}:
		defer func() { <-a.authSlots }()
	default:
		return controlstate.Token{}, fmt.Errorf("%w: %d token checks at once, the most an agent runs; try again", ErrTooMany, cap(a.authSlots))
	}
	ans, err := a.control(r.Context(), controlRequest{Op: "authenticate", Command: tokenHash(token)})
	if err != nil {
		return controlstate.Token{}, err
	}
	if len(ans.Tokens) != 1 {
		return controlstate.Token{}, fmt.Errorf("%w: unknown token", ErrUnauthorized)
	}
	return ans.Tokens[0], nil
}

// handleWhoami answers who the request's token says its bearer is (a
// token that does not work now never gets here: guard refuses it with 401
// and why).
func (a *Agent) handleWhoami(w http.ResponseWriter, r *http.Request) {
	c := callerOf(r)
	if c.cluster {
		writeJSON(w, Identity{Cluster: true, Token: tokenInfo(c.token, time.Now())})
		return
	}
	writeJSON(w, Identity{Token: tokenInfo(c.token, time.Now())})
}
