//go:build linux

package fabric

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/wasmfabric/fabric/internal/controlstate"
	"github.com/wasmfabric/fabric/internal/dashboard"
)

// Authorization of the HTTP API, in one place: every route is declared
// in apiRoutes with its access, and the server serves only what that
// table declares. A request's caller is the cluster's operator (the
// cluster's admin token) or a tenant's token, checked on the leader; the
// access says which callers a route takes at all, and handlers that
// serve a tenant's records (jobs) check that the record is the caller's
// tenant's (a record of another tenant is not found).

// access is who may call a route.
type access int

const (
	// clusterOnly routes take a cluster admin token only.
	clusterOnly access = iota
	// tenantUser routes also take any tenant's token (a user's and up);
	// what they serve is the tenant's own.
	tenantUser
	// public routes take no token: the dashboard's files, which hold no
	// data (the page reads the API with the token its user gives).
	public
)

// apiRoute is one route of the API and its access.
type apiRoute struct {
	pattern string
	access  access
	handler http.HandlerFunc
}

// apiRoutes is every route the API serves.
func (a *Agent) apiRoutes() []apiRoute {
	return []apiRoute{
		{"GET /v1/nodes", tenantUser, a.handleNodes}, // the cluster's capacity: no tenant's records
		{"GET /v1/status", tenantUser, a.handleStatus},
		{"POST /v1/jobs", tenantUser, a.handleJob},
		{"GET /v1/jobs", tenantUser, a.handleJobList},
		{"GET /v1/jobs/{id}", tenantUser, a.handleJobGet},
		{"GET /v1/jobs/{id}/logs", tenantUser, a.handleJobLogs},
		{"POST /v1/jobs/{id}/stop", tenantUser, a.handleJobStop},
		{"DELETE /v1/jobs/{id}", tenantUser, a.handleJobDelete},
		{"POST /v1/modules", tenantUser, a.handleModuleUpload},
		{"GET /v1/modules", tenantUser, a.handleModuleList},
		{"DELETE /v1/modules/{digest}", tenantUser, a.handleModuleDelete},
		{"POST /v1/modules/{digest}/call", tenantUser, a.handleCall},
		{"GET /v1/tasks", tenantUser, a.handleTasks},
		{"GET /v1/tasks/summary", tenantUser, a.handleTaskSummary},
		{"GET /v1/history", tenantUser, a.handleHistory},
		{"GET /v1/serve/deployments", tenantUser, a.handleDeploymentList},
		{"PUT /v1/serve/deployments/{name}", tenantUser, a.handleDeploymentPut},
		{"DELETE /v1/serve/deployments/{name}", tenantUser, a.handleDeploymentDelete},
		{"GET /v1/serve/deployments/{name}/logs", tenantUser, a.handleDeploymentLogs},
		{"GET /v1/actors", tenantUser, a.handleActors},
		{"GET /v1/actors/summary", tenantUser, a.handleActorSummary},
		{"GET /v1/objects", tenantUser, a.handleObjects},
		{"GET /v1/objects/summary", tenantUser, a.handleObjectSummary},
		{"GET /v1/placement-groups", tenantUser, a.handleGroupsAndWorkers},
		{"GET /v1/workers", tenantUser, a.handleGroupsAndWorkers},
		{"GET /v1/jobs/{id}/timeline", tenantUser, a.handleTimeline},
		{"GET /v1/debug/state", clusterOnly, a.handleDebugState},
		{"GET /metrics", clusterOnly, a.handleMetrics},
		{"GET " + dashboard.Prefix, public, dashboard.Handler().ServeHTTP},
		{"GET /{$}", public, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, dashboard.Prefix, http.StatusFound) }},
		{"POST /v1/tenants", clusterOnly, a.handleTenantCreate},
		{"GET /v1/tenants", clusterOnly, a.handleTenantList},
		{"DELETE /v1/tenants/{name}", clusterOnly, a.handleTenantDelete},
		{"POST /v1/tenants/{name}/quota", clusterOnly, a.handleTenantQuota},
		{"POST /v1/tenants/{name}/keys", clusterOnly, a.handleTenantKeyAdd},
		{"GET /v1/tenants/{name}/keys", clusterOnly, a.handleTenantKeyList},
		{"DELETE /v1/tenants/{name}/keys/{id}", clusterOnly, a.handleTenantKeyRemove},
		{"POST /v1/tokens", clusterOnly, a.handleTokenCreate},
		{"GET /v1/tokens", clusterOnly, a.handleTokenList},
		{"DELETE /v1/tokens/{id}", clusterOnly, a.handleTokenRevoke},
		{"GET /v1/whoami", tenantUser, a.handleWhoami},
		{"POST /v1/join-tokens", clusterOnly, a.handleJoinTokenCreate},
		{"GET /v1/join-tokens", clusterOnly, a.handleJoinTokenList},
		{"DELETE /v1/join-tokens/{id}", clusterOnly, a.handleJoinTokenDelete},
		{"GET /v1/admitted", clusterOnly, a.handleAdmitted},
		{"POST /v1/nodes/{id}/revoke", clusterOnly, a.handleRevoke},
		{"POST /v1/gossip-key/rotate", clusterOnly, a.handleRotateGossipKey},
	}
}

// caller is who sent a request.
type caller struct {
	cluster bool               // a cluster admin token (of no tenant)
	token   controlstate.Token // a tenant's, when not cluster
}

type callerKey struct{}

// callerOf returns the request's caller (set by guard).
func callerOf(r *http.Request) caller {
	c, _ := r.Context().Value(callerKey{}).(caller)
	return c
}

// guard wraps a route's handler with its access rule. Every token is
// checked by the control plane's leader (the cluster's admin tokens are
// tokens of no tenant), and travels with the control requests the
// handler makes, for the leader to check again.
func (a *Agent) guard(rt apiRoute) http.HandlerFunc {
	if rt.access == public {
		return rt.handler
	}
	return func(w http.ResponseWriter, r *http.Request) {
		bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || bearer == "" {
			apiError(w, http.StatusUnauthorized, "missing API token: pass the cluster's admin token (which the first agent wrote to its data directory) or a tenant's token, with --token-file, FABRIC_TOKEN_FILE, --token or FABRIC_TOKEN")
			return
		}
		t, err := a.authenticate(r, bearer)
		switch {
		case errors.Is(err, ErrUnauthorized):
			apiError(w, http.StatusUnauthorized, err.Error())
			return
		case err != nil:
			apiFail(w, err)
			return
		case rt.access == clusterOnly && t.Tenant != "":
			apiError(w, http.StatusForbidden, fmt.Sprintf("%s takes a cluster admin token; a tenant's token (tenant %s) does not open it", rt.pattern, t.Tenant))
			return
		}
		ctx := withCallerToken(context.WithValue(r.Context(), callerKey{}, caller{cluster: t.Tenant == "", token: t}), bearer)
		rt.handler(w, r.WithContext(ctx))
	}
}

// sees reports whether the caller may see a job: the cluster's operator
// sees every job, a tenant's token its tenant's.
func (c caller) sees(j controlstate.Job) bool {
	return c.cluster || j.Tenant == c.token.Tenant && j.Tenant != ""
}

// manages reports whether the caller may stop or delete a job it sees:
// an operator or admin of the tenant any of its jobs, a user its own.
func (c caller) manages(j controlstate.Job) bool {
	return c.cluster || c.sees(j) && (c.token.Role != controlstate.RoleUser || j.Owner == c.token.ID)
}

// tenantJob looks a job up for the request's caller: one the caller may
// not see is not found; manage asks that it may stop or delete it too.
func (a *Agent) tenantJob(r *http.Request, id string, manage bool) (controlstate.Job, error) {
	c := callerOf(r)
	key, ok := c.jobKey(id)
	if !ok {
		return controlstate.Job{}, fmt.Errorf("%w: %q", ErrNoJob, id)
	}
	j, err := a.lookupJob(r.Context(), key)
	if err != nil {
		return j, fmt.Errorf("%w: %q", ErrNoJob, id)
	}
	switch {
	case !c.sees(j):
		return controlstate.Job{}, fmt.Errorf("%w: %q", ErrNoJob, id)
	case manage && !c.manages(j):
		return controlstate.Job{}, fmt.Errorf("%w: job %s is token %s's, and a user's token manages its own jobs only (an operator's manages the tenant's)", ErrForbidden, id, j.Owner)
	}
	return j, nil
}

// jobKey is the control state's key of the job the caller names id: a
// tenant names its own jobs (its names are its own), the cluster's
// operator any job by its key ("tenant:name" for a tenant's).
func (c caller) jobKey(id string) (string, bool) {
	if c.cluster {
		return id, controlstate.ValidJobKey(id)
	}
	return controlstate.JobKey(c.token.Tenant, id), controlstate.ValidID(id)
}

// jobID is the ID the caller knows the job keyed key by.
func (c caller) jobID(key string) string {
	if c.cluster {
		return key
	}
	return controlstate.JobName(key)
}

// jobInfo is a job as the caller sees it, under the ID it knows.
func (c caller) jobInfo(j controlstate.Job) JobInfo {
	info := jobInfo(j)
	info.ID = c.jobID(j.ID)
	return info
}

// tenant is the caller's tenant ("": the cluster's operator).
func (c caller) tenant() string {
	if c.cluster {
		return ""
	}
	return c.token.Tenant
}

// seesModule reports whether the caller may see and run a module: the
// cluster's operator every module, a tenant those it stored.
func (c caller) seesModule(m controlstate.Module) bool {
	return c.cluster || slices.Contains(m.Tenants, c.token.Tenant)
}

// tenantModule looks a module up for the request's caller: one the
// caller may not see is not found; manage asks that it may delete it
// too (an operator or admin of the tenant).
func (a *Agent) tenantModule(r *http.Request, digest string, manage bool) (controlstate.Module, error) {
	ans, err := a.control(r.Context(), controlRequest{Op: "module", ID: digest})
	if err != nil {
		return controlstate.Module{}, err
	}
	c := callerOf(r)
	if len(ans.Modules) != 1 || !c.seesModule(ans.Modules[0]) {
		return controlstate.Module{}, fmt.Errorf("%w: %q", ErrNoModuleHere, digest)
	}
	if manage && !c.cluster && c.token.Role == controlstate.RoleUser {
		return controlstate.Module{}, fmt.Errorf("%w: deleting a module takes an operator's or admin's token of the tenant", ErrForbidden)
	}
	return ans.Modules[0], nil
}
