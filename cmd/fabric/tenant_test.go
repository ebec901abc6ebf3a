//go:build linux

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmfabric/fabric/fabric"
	"github.com/wasmfabric/fabric/internal/testrig"
)

// TestTenantTokens: the operator makes a tenant and tokens for it; a
// token's secret is printed once and listed never; the token says who it
// is on another agent (fabric whoami, from a 0600 file; a file others may
// read is refused); it lists jobs and does not open the cluster
// operator's routes (403); revoked on one agent, it
// stops working on the other at once; one past its time to live is
// refused as expired; deleting the tenant takes its tokens.
func TestTenantTokens(t *testing.T) {
	isolateLocalAgents(t)
	a := startAgentProc(t)
	b := startAgentProc(t, "--join", a.gossip, "--token", a.joinToken(t))
	b.id(t)
	must := func(res testrig.Result, what string) testrig.Result {
		t.Helper()
		if res.Code != 0 {
			t.Fatalf("%s: exit %d\nstdout %s\nstderr %s", what, res.Code, res.Stdout, res.Stderr)
		}
		return res
	}
	must(runOn(t, a, "tenant", "create", "acme"), "tenant create")
	if res := runOn(t, a, "tenant", "create", "acme"); res.Code == 0 || !strings.Contains(res.Stderr, "a tenant with that name exists") {
		t.Fatalf("a second tenant acme: exit %d, %s", res.Code, res.Stderr)
	}
	var tenants []fabric.TenantInfo
	if err := json.Unmarshal([]byte(must(runOn(t, a, "tenant", "list", "-o", "json"), "tenant list").Stdout), &tenants); err != nil || len(tenants) != 1 || tenants[0].Name != "acme" {
		t.Fatalf("tenants: %+v, %v", tenants, err)
	}
	dir := t.TempDir()
	newToken := func(ttl string) (secret, file string) {
		t.Helper()
		res := must(runOn(t, a, "token", "create", "--tenant", "acme", "--role", "user", "--ttl", ttl, "--note", "ci"), "token create")
		secret = strings.TrimSpace(res.Stdout)
		if !strings.HasPrefix(secret, "fabric_") || strings.Count(res.Stdout, "\n") != 1 || !strings.Contains(res.Stderr, "it is shown once") {
			t.Fatalf("token create printed stdout %q, stderr %q", res.Stdout, res.Stderr)
		}
		f, err := os.CreateTemp(dir, "token")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(secret + "\n"); err != nil {
			t.Fatal(err)
		}
		f.Close()
		return secret, f.Name()
	}
	secret, file := newToken("1h")
	whoami := func(p *agentProc, file string) testrig.Result {
		return testrig.Run(t, time.Minute, "whoami", "--address", p.api, "--token-file", file)
	}
	res := must(whoami(b, file), "whoami on the other agent")
	if !strings.Contains(res.Stdout, "of tenant acme, role user (active)") {
		t.Fatalf("whoami: %q", res.Stdout)
	}
	if res := testrig.Run(t, time.Minute, "tenant", "list", "--address", b.api, "--token-file", file); res.Code == 0 || !strings.Contains(res.Stderr, "403") ||
		!strings.Contains(res.Stderr, "takes a cluster admin token") {
		t.Fatalf("a tenant's token on a route of the cluster's operator: exit %d, %s", res.Code, res.Stderr)
	}
	if res := must(testrig.Run(t, time.Minute, "job", "list", "--address", b.api, "--token-file", file), "a tenant's job list"); !strings.Contains(res.Stdout, "ID") {
		t.Fatalf("a tenant's job list: %q", res.Stdout)
	}
	must(testrig.Run(t, time.Minute, "list", "nodes", "--address", b.api, "--token-file", file), "a tenant's node list")
	loose := filepath.Join(dir, "loose")
	if err := os.WriteFile(loose, []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := whoami(b, loose); res.Code == 0 || !strings.Contains(res.Stderr, "others may read it") {
		t.Fatalf("a token file others may read: exit %d, %s", res.Code, res.Stderr)
	}
	listed := must(runOn(t, a, "token", "list", "--tenant", "acme", "-o", "json"), "token list")
	if strings.Contains(listed.Stdout, secret[len("fabric_"):]) || strings.Contains(listed.Stdout, strings.SplitN(secret, "_", 3)[2]) {
		t.Fatalf("a listing shows a secret: %s", listed.Stdout)
	}
	var toks []fabric.TokenInfo
	if err := json.Unmarshal([]byte(listed.Stdout), &toks); err != nil || len(toks) != 1 || toks[0].State != "active" || toks[0].Note != "ci" {
		t.Fatalf("tokens: %+v, %v", toks, err)
	}
	must(runOn(t, a, "token", "revoke", toks[0].ID), "token revoke")
	if res := whoami(b, file); res.Code == 0 || !strings.Contains(res.Stderr, "revoked") {
		t.Fatalf("a revoked token on the other agent: exit %d, %s", res.Code, res.Stderr)
	}
	_, short := newToken("1s")
	time.Sleep(1100 * time.Millisecond)
	if res := whoami(a, short); res.Code == 0 || !strings.Contains(res.Stderr, "expired") {
		t.Fatalf("an expired token: exit %d, %s", res.Code, res.Stderr)
	}
	live := filepath.Join(dir, "saved")
	if res := must(runOn(t, a, "token", "create", "--tenant", "acme", "--role", "operator", "--save", live), "token create --save"); res.Stdout != "" || !strings.Contains(res.Stderr, "saved to "+live) {
		t.Fatalf("token create --save printed stdout %q, stderr %q", res.Stdout, res.Stderr)
	}
	if st, err := os.Stat(live); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the saved token's file: %v, %v", st, err)
	}
	if res := runOn(t, a, "token", "create", "--tenant", "acme", "--role", "user", "--save", live); res.Code == 0 || !strings.Contains(res.Stderr, "file exists") {
		t.Fatalf("--save over a file: exit %d, %s", res.Code, res.Stderr)
	}
	if res := must(whoami(b, live), "whoami before the tenant goes"); !strings.Contains(res.Stdout, "role operator") {
		t.Fatalf("whoami with the saved token: %q", res.Stdout)
	}
	must(runOn(t, a, "tenant", "delete", "acme"), "tenant delete")
	if res := whoami(b, live); res.Code == 0 || !strings.Contains(res.Stderr, "unknown token") {
		t.Fatalf("a deleted tenant's token: exit %d, %s", res.Code, res.Stderr)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("fabric_0123456789ab_"+strings.Repeat("A", 43)), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := whoami(b, bad); res.Code == 0 || !strings.Contains(res.Stderr, "unknown token") {
		t.Fatalf("a made-up token: exit %d, %s", res.Code, res.Stderr)
	}
	if res := testrig.Run(t, time.Minute, "whoami", "--address", b.api, "--token", "fabric_garbage"); res.Code == 0 || !strings.Contains(res.Stderr, "not an API token") {
		t.Fatalf("a malformed token: exit %d, %s", res.Code, res.Stderr)
	}
	if res := must(runOn(t, b, "whoami"), "whoami with the cluster's token"); !strings.Contains(res.Stdout, "a cluster admin token") {
		t.Fatalf("whoami with the cluster's token: %q", res.Stdout)
	}
}

// TestTenantNamespaces: namespaces are per tenant. A detached actor that
// a job of tenant acme names on one agent is found and called by another
// acme job on another agent, and not found by a job of tenant globex,
// which may take the same name for an actor of its own.
func TestTenantNamespaces(t *testing.T) {
	isolateLocalAgents(t)
	wasm := testrig.Guest(t, "internal/testguests/features")
	a := startAgentProc(t)
	b := startAgentProc(t, "--join", a.gossip, "--token", a.joinToken(t))
	b.id(t)
	dir := t.TempDir()
	files := map[string]string{}
	for _, tn := range []string{"acme", "globex"} {
		if res := runOn(t, a, "tenant", "create", tn); res.Code != 0 {
			t.Fatalf("tenant create %s: %s", tn, res.Stderr)
		}
		files[tn] = filepath.Join(dir, tn)
		if res := runOn(t, a, "token", "create", "--tenant", tn, "--role", "user", "--save", files[tn]); res.Code != 0 {
			t.Fatalf("token create %s: %s", tn, res.Stderr)
		}
	}
	job := func(p *agentProc, tenant, cases string) testrig.Result {
		t.Helper()
		res := testrig.Run(t, 2*time.Minute, "job", "submit", "--address", p.api, "--token-file", files[tenant], wasm, "--", cases)
		if res.Code != 0 {
			t.Fatalf("%s's %s: exit %d\n%s\n%s", tenant, cases, res.Code, res.Stdout, res.Stderr)
		}
		return res
	}
	if res := job(a, "acme", "names_create"); !strings.Contains(res.Stdout, "ok: names_created\n") {
		t.Fatalf("acme's names_create:\n%s", res.Stdout)
	}
	if res := job(b, "acme", "names_use"); !strings.Contains(res.Stdout, "ok: names_found_on_another_node\n") {
		t.Fatalf("acme's names_use on the other agent:\n%s", res.Stdout)
	}
	res := job(b, "globex", "names_use")
	if !strings.Contains(res.Stdout, "FAIL: names_found_on_another_node") || !strings.Contains(res.Stdout, `no actor named \"shared\" in namespace \"xnode\" in the cluster`) &&
		!strings.Contains(res.Stdout, `no actor named "shared" in namespace "xnode" in the cluster`) {
		t.Fatalf("globex's names_use finds acme's actor:\n%s", res.Stdout)
	}
	if res := job(b, "globex", "names_gone"); !strings.Contains(res.Stdout, "ok: names_taken_again\n") {
		t.Fatalf("globex takes the name in its own namespace:\n%s", res.Stdout)
	}
}

// TestModuleSigningCLI: keygen makes a key pair, tenant key add gives the
// public key to a tenant, whose unsigned submission is then refused; sign
// writes FILE.wasm.sig, which submit sends by itself.
func TestModuleSigningCLI(t *testing.T) {
	isolateLocalAgents(t)
	a := startAgentProc(t)
	must := func(res testrig.Result, what string) testrig.Result {
		t.Helper()
		if res.Code != 0 {
			t.Fatalf("%s: exit %d\nstdout %s\nstderr %s", what, res.Code, res.Stdout, res.Stderr)
		}
		return res
	}
	dir := t.TempDir()
	must(runOn(t, a, "tenant", "create", "acme"), "tenant create")
	secret := strings.TrimSpace(must(runOn(t, a, "token", "create", "--tenant", "acme", "--role", "user"), "token create").Stdout)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "acme-signing")
	if res := must(testrig.Run(t, time.Minute, "module", "keygen", "--out", key), "keygen"); !strings.Contains(res.Stdout, "key ID") {
		t.Fatalf("keygen: %q", res.Stdout)
	}
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the private key file: %v %v", st.Mode(), err)
	}
	if res := testrig.Run(t, time.Minute, "module", "keygen", "--out", key); res.Code == 0 {
		t.Fatal("keygen wrote over a key")
	}
	must(runOn(t, a, "tenant", "key", "add", "acme", "--key", key+".pub", "--note", "ci"), "tenant key add")
	var keys []fabric.TenantKeyInfo
	if err := json.Unmarshal([]byte(must(runOn(t, a, "tenant", "key", "list", "acme", "-o", "json"), "key list").Stdout), &keys); err != nil || len(keys) != 1 || keys[0].Note != "ci" {
		t.Fatalf("keys: %+v %v", keys, err)
	}
	module := filepath.Join(dir, "job.wasm")
	b, err := os.ReadFile(testrig.Guest(t, "internal/testguests/hostile"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(module, b, 0o644); err != nil {
		t.Fatal(err)
	}
	submit := func() testrig.Result {
		return testrig.Run(t, time.Minute, "submit", module, "--address", a.api, "--token-file", tokenFile, "--", "ticks", "1", "1")
	}
	if res := submit(); res.Code == 0 || !strings.Contains(res.Stderr, "403") || !strings.Contains(res.Stderr, "fabric module sign") {
		t.Fatalf("an unsigned submission: exit %d\n%s", res.Code, res.Stderr)
	}
	if res := must(testrig.Run(t, time.Minute, "module", "sign", module, "--key", key), "sign"); !strings.Contains(res.Stdout, "job.wasm.sig") {
		t.Fatalf("sign: %q", res.Stdout)
	}
	if res := must(submit(), "a signed submission"); !strings.Contains(res.Stdout, "ticks: done") {
		t.Fatalf("a signed submission: %q", res.Stdout)
	}
	must(runOn(t, a, "tenant", "key", "remove", "acme", keys[0].ID), "key remove")
}
