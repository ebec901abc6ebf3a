//go:build linux

package fabric

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTokenChecksBounded: anyone who reaches the API may present a
// token, and each well-formed one is checked on the leader: past
// maxAuthChecks at once an agent answers 429 instead of asking, and a
// malformed token never reaches the leader.
func TestTokenChecksBounded(t *testing.T) {
	a := startJobsAgent(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wellFormed := tokenPrefix + "0123456789ab_" + strings.Repeat("A", 43)
	if !wellFormedToken(wellFormed) || wellFormedToken(tokenPrefix+"x") || wellFormedToken(strings.TrimPrefix(wellFormed, tokenPrefix)) {
		t.Fatal("wellFormedToken")
	}
	for range maxAuthChecks {
		a.authSlots <- struct{}{}
	}
	_, err := (a.Client(wellFormed)).Whoami(ctx)
	if err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("a check past the bound: %v", err)
	}
	_, err = (a.Client("fabric_nope")).Whoami(ctx)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("a malformed token with no slot free: %v", err)
	}
	for range maxAuthChecks {
		<-a.authSlots
	}
	_, err = (a.Client(wellFormed)).Whoami(ctx)
	if err == nil || !strings.Contains(err.Error(), "401") || errors.Is(err, ErrTooMany) {
		t.Fatalf("an unknown token with slots free: %v", err)
	}
}

// TestAuthMatrix: every route of the API, called with no token, a wrong
// one, a malformed tenant's token, an unknown one, an expired one, a
// revoked one, is refused with 401; a tenant's working token is refused
// with 403 on the routes that take the cluster's token, and on the
// tenant routes finds none of another tenant's jobs. Every route needs an
// expectation here: one added to the API without it fails the test.
func TestAuthMatrix(t *testing.T) {
	a := startJobsAgent(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := a.Client(a.APIToken())
	want := map[string]access{
		"GET /v1/nodes": tenantUser, "GET /v1/status": tenantUser,
		"POST /v1/jobs": tenantUser, "GET /v1/jobs": tenantUser, "GET /v1/jobs/{id}": tenantUser,
		"GET /v1/jobs/{id}/logs": tenantUser, "POST /v1/jobs/{id}/stop": tenantUser, "DELETE /v1/jobs/{id}": tenantUser,
		"POST /v1/modules": tenantUser, "GET /v1/modules": tenantUser, "DELETE /v1/modules/{digest}": tenantUser,
		"POST /v1/modules/{digest}/call": tenantUser, "GET /v1/debug/state": clusterOnly,
		"POST /v1/tenants": clusterOnly, "GET /v1/tenants": clusterOnly, "DELETE /v1/tenants/{name}": clusterOnly, "POST /v1/tenants/{name}/quota": clusterOnly,
		"POST /v1/tenants/{name}/keys": clusterOnly, "GET /v1/tenants/{name}/keys": clusterOnly, "DELETE /v1/tenants/{name}/keys/{id}": clusterOnly,
		"POST /v1/tokens": clusterOnly, "GET /v1/tokens": clusterOnly, "DELETE /v1/tokens/{id}": clusterOnly,
		"GET /v1/whoami": tenantUser, "GET /v1/tasks": tenantUser, "GET /v1/tasks/summary": tenantUser, "GET /v1/history": tenantUser, "GET /v1/serve/deployments": tenantUser, "PUT /v1/serve/deployments/{name}": tenantUser, "DELETE /v1/serve/deployments/{name}": tenantUser, "GET /v1/serve/deployments/{name}/logs": tenantUser, "GET /v1/actors": tenantUser, "GET /v1/actors/summary": tenantUser, "GET /v1/objects": tenantUser, "GET /v1/objects/summary": tenantUser, "GET /v1/placement-groups": tenantUser, "GET /v1/workers": tenantUser, "GET /v1/jobs/{id}/timeline": tenantUser, "GET /metrics": clusterOnly, "GET /ui/": public, "GET /{$}": public,
		"POST /v1/join-tokens": clusterOnly, "GET /v1/join-tokens": clusterOnly, "DELETE /v1/join-tokens/{id}": clusterOnly,
		"GET /v1/admitted": clusterOnly, "POST /v1/nodes/{id}/revoke": clusterOnly, "POST /v1/gossip-key/rotate": clusterOnly,
	}
	for _, rt := range a.apiRoutes() {
		if acc, ok := want[rt.pattern]; !ok {
			t.Errorf("route %s has no expectation in the auth matrix: decide its rule, and add it here", rt.pattern)
		} else if acc != rt.access {
			t.Errorf("route %s: access %d, the matrix expects %d", rt.pattern, rt.access, acc)
		}
	}
	for _, tn := range []string{"acme", "globex"} {
		if _, err := admin.CreateTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(tenant, role string, ttl time.Duration) (*Client, NewToken) {
		t.Helper()
		nt, err := admin.CreateToken(ctx, TokenRequest{Tenant: tenant, Role: role, TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return a.Client(nt.Token), nt
	}
	acme, acmeTok := mk("acme", "user", 0)
	acme2, _ := mk("acme", "user", 0)
	acmeOp, _ := mk("acme", "operator", 0)
	globex, _ := mk("globex", "user", 0)
	expired, _ := mk("acme", "admin", time.Millisecond)
	revoked, revokedTok := mk("acme", "admin", 0)
	if err := admin.RevokeToken(ctx, revokedTok.ID); err != nil {
		t.Fatal(err)
	}
	hostile := guestBytes(t, "internal/testguests/hostile")
	job, err := acme.SubmitDetached(ctx, hostile, []string{"ticks", "100000", "100"}, SubmitOptions{ID: "ja"})
	if err != nil {
		t.Fatal(err)
	}
	if job.Tenant != "acme" || job.Owner != acmeTok.ID {
		t.Fatalf("a tenant's job: %+v", job)
	}
	path := func(p string) (method, url string) {
		method, url, _ = strings.Cut(p, " ")
		url = strings.NewReplacer("{id}", "ja", "{digest}", job.Module, "{name}", "acme").Replace(url)
		return method, url
	}
	call := func(token, p string) int {
		method, u := path(p)
		req, _ := http.NewRequestWithContext(ctx, method, "https://"+a.HTTPAddr()+u, strings.NewReader("{}"))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := a.Client("").httpClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	bad := map[string]string{
		"no token": "", "a wrong token": "fat1_wrong", "a malformed tenant's token": "fabric_x",
		"an unknown tenant's token": tokenPrefix + "0123456789ab_" + strings.Repeat("A", 43),
		"an expired token":          expired.Token, "a revoked token": revoked.Token,
	}
	for _, rt := range a.apiRoutes() {
		if rt.access == public {
			// No token: the dashboard's files, the same for everyone, and
			// nothing of the cluster's in them.
			_, u := path(rt.pattern)
			u = strings.TrimSuffix(u, "{$}")
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+a.HTTPAddr()+u, nil)
			resp, err := a.Client("").httpClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || strings.Contains(string(body), a.ID) || strings.Contains(string(body), job.Module) || resp.Header.Get("Content-Security-Policy") == "" {
				t.Errorf("public route %s: %d, CSP %q\n%.200s", rt.pattern, resp.StatusCode, resp.Header.Get("Content-Security-Policy"), body)
			}
			continue
		}
		for what, tok := range bad {
			if code := call(tok, rt.pattern); code != http.StatusUnauthorized {
				t.Errorf("%s with %s: %d, want 401", rt.pattern, what, code)
			}
		}
		if rt.access == clusterOnly {
			if code := call(globex.Token, rt.pattern); code != http.StatusForbidden {
				t.Errorf("%s with a tenant's token: %d, want 403", rt.pattern, code)
			}
		}
	}
	// Another tenant finds none of acme's jobs and modules, whatever it
	// knows.
	for _, p := range []string{"GET /v1/jobs/{id}", "GET /v1/jobs/{id}/logs", "POST /v1/jobs/{id}/stop", "DELETE /v1/jobs/{id}",
		"DELETE /v1/modules/{digest}", "POST /v1/modules/{digest}/call"} {
		if code := call(globex.Token, p); code != http.StatusNotFound {
			t.Errorf("%s of acme's job or module with globex's token: %d, want 404", p, code)
		}
	}
	if ms, err := globex.Modules(ctx); err != nil || len(ms) != 0 {
		t.Fatalf("globex lists modules %+v, %v", ms, err)
	}
	if ms, err := acme.Modules(ctx); err != nil || len(ms) != 1 || ms[0].Digest != job.Module || ms[0].Tenants != nil {
		t.Fatalf("acme lists modules %+v, %v", ms, err)
	}
	if ms, err := admin.Modules(ctx); err != nil || len(ms) != 1 || !slices.Equal(ms[0].Tenants, []string{"acme"}) {
		t.Fatalf("the cluster's operator lists modules %+v, %v", ms, err)
	}
	// The same bytes uploaded by globex: now globex's too, and globex
	// still does not learn that acme has them.
	up, err := globex.Upload(ctx, bytes.NewReader(hostile), "renamed")
	if err != nil || up.Digest != job.Module || up.Tenants != nil {
		t.Fatalf("globex uploads the same module: %+v, %v", up, err)
	}
	if err := acme.DeleteModule(ctx, job.Module); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("acme's user deletes a module: %v", err)
	}
	if jobs, err := globex.Jobs(ctx); err != nil || len(jobs) != 0 {
		t.Fatalf("globex lists %+v, %v", jobs, err)
	}
	// Each tenant names its jobs in a space of its own: globex's job "ja"
	// is refused by nothing (no 409 says acme has one), and each sees its
	// own under that name; the cluster's operator sees both, keyed.
	if _, err := acme.SubmitDetached(ctx, hostile, []string{"ticks", "1", "1"}, SubmitOptions{ID: "ja"}); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("acme's second job ja: %v, want 409", err)
	}
	gj, err := globex.SubmitDetached(ctx, hostile, []string{"ticks", "1", "1"}, SubmitOptions{ID: "ja"})
	if err != nil || gj.ID != "ja" || gj.Tenant != "globex" {
		t.Fatalf("globex's job ja beside acme's: %+v, %v", gj, err)
	}
	if j, err := acme.Job(ctx, "ja"); err != nil || j.ID != "ja" || j.Owner != acmeTok.ID {
		t.Fatalf("acme's ja after globex's: %+v, %v", j, err)
	}
	if j, err := admin.Job(ctx, "globex:ja"); err != nil || j.ID != "globex:ja" || j.Tenant != "globex" {
		t.Fatalf("the cluster's operator looks globex's ja up: %+v, %v", j, err)
	}
	if _, err := globex.Job(ctx, "acme:ja"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("globex names acme's job by its key: %v, want 404", err)
	}
	// In acme: another user sees the job and may not stop it; an
	// operator may; the cluster's operator sees every job.
	if j, err := acme2.Job(ctx, "ja"); err != nil || j.ID != "ja" {
		t.Fatalf("acme's other user: %+v, %v", j, err)
	}
	if _, err := acme2.StopJob(ctx, "ja"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("acme's other user stops acme's job: %v", err)
	}
	jobs, err := admin.Jobs(ctx)
	if err != nil || len(jobs) != 2 || jobs[0].ID != "acme:ja" || jobs[1].ID != "globex:ja" {
		t.Fatalf("the cluster's operator lists %+v, %v", jobs, err)
	}
	if j, err := acmeOp.StopJob(ctx, "ja"); err != nil || j.State != "stopped" {
		t.Fatalf("acme's operator stops acme's job: %+v, %v", j, err)
	}
	// acme's operator drops acme's claim: globex still has the module.
	if err := acmeOp.DeleteModule(ctx, job.Module); err != nil {
		t.Fatal(err)
	}
	if ms, err := acme.Modules(ctx); err != nil || len(ms) != 0 {
		t.Fatalf("acme lists modules after dropping its claim: %+v, %v", ms, err)
	}
	if ms, err := globex.Modules(ctx); err != nil || len(ms) != 1 {
		t.Fatalf("globex lists modules after acme dropped its claim: %+v, %v", ms, err)
	}
}

// TestTenantQuotaAPI: a tenant past its quota of jobs gets 429 naming the
// limit, and the job it runs goes on; a job that ends makes room; the
// operator raises the quota.
func TestTenantQuotaAPI(t *testing.T) {
	a := startJobsAgent(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := a.Client(a.APIToken())
	if _, err := admin.CreateTenantWith(ctx, TenantInfo{Name: "acme", MaxJobs: 1}); err != nil {
		t.Fatal(err)
	}
	nt, err := admin.CreateToken(ctx, TokenRequest{Tenant: "acme", Role: "user"})
	if err != nil {
		t.Fatal(err)
	}
	acme := a.Client(nt.Token)
	hostile := guestBytes(t, "internal/testguests/hostile")
	if _, err := acme.SubmitDetached(ctx, hostile, []string{"ticks", "100000", "100"}, SubmitOptions{ID: "first"}); err != nil {
		t.Fatal(err)
	}
	_, err = acme.SubmitDetached(ctx, hostile, []string{"ticks", "1", "1"}, SubmitOptions{ID: "second"})
	if err == nil || !strings.Contains(err.Error(), "429") || !strings.Contains(err.Error(), "tenant acme has 1 jobs that have not ended, its quota of jobs") {
		t.Fatalf("past the quota: %v", err)
	}
	if j, err := acme.Job(ctx, "first"); err != nil || j.State == "stopped" || j.State == "failed" {
		t.Fatalf("the running job after a refusal: %+v, %v", j, err)
	}
	if _, err := admin.SetQuota(ctx, TenantInfo{Name: "acme", MaxJobs: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.SubmitDetached(ctx, hostile, []string{"ticks", "1", "1"}, SubmitOptions{ID: "second"}); err != nil {
		t.Fatalf("after the quota was raised: %v", err)
	}
	ts, err := admin.Tenants(ctx)
	if err != nil || len(ts) != 1 || ts[0].MaxJobs != 2 {
		t.Fatalf("tenants: %+v, %v", ts, err)
	}
	if _, err := admin.StopJob(ctx, "acme:first"); err != nil {
		t.Fatal(err)
	}
}
