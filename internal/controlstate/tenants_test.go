package controlstate

import (
	"crypto/sha256"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func hashOf(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

func token(id, tenant string, role Role, secret string, created, expires int64) Command {
	return Command{CreateToken: &CreateToken{Token: Token{ID: id, Tenant: tenant, Role: role, Hash: hashOf(secret), Created: created, Expires: expires}}}
}

// TestTenantsAndTokens steps tenants and tokens: a token needs its
// tenant, a role and a fresh ID and secret; it authenticates until it
// expires or is revoked; deleting a tenant takes its tokens; bad records
// are refused.
func TestTenantsAndTokens(t *testing.T) {
	steps := []struct {
		cmd  Command
		want error
	}{
		{Command{CreateTenant: &CreateTenant{Name: "acme", Time: 1}}, nil},
		{Command{CreateTenant: &CreateTenant{Name: "acme", Time: 2}}, ErrTenantExists},
		{Command{CreateTenant: &CreateTenant{Name: "bad name", Time: 2}}, ErrBadCommand},
		{Command{CreateTenant: &CreateTenant{Name: "globex", Time: 3}}, nil},
		{token("t1", "acme", RoleUser, "s1", 10, 0), nil},
		{token("t2", "acme", RoleAdmin, "s2", 10, 100), nil},
		{token("t3", "globex", RoleOperator, "s3", 10, 0), nil},
		{token("t1", "acme", RoleUser, "other", 10, 0), ErrTokenExists},
		{token("t4", "acme", RoleUser, "s1", 10, 0), ErrTokenExists}, // the same secret
		{token("t5", "nobody", RoleUser, "s5", 10, 0), ErrNoTenant},
		{token("t6", "acme", "root", "s6", 10, 0), ErrBadCommand},
		{token("t7", "acme", RoleUser, "s7", 10, 5), ErrBadCommand}, // expires before it is made
		{Command{CreateToken: &CreateToken{Token: Token{ID: "t8", Tenant: "acme", Role: RoleUser, Hash: []byte("short"), Created: 1}}}, ErrBadCommand},
		{Command{RevokeToken: &RevokeToken{ID: "t3", Time: 50}}, nil},
		{Command{RevokeToken: &RevokeToken{ID: "t3", Time: 60}}, nil}, // again: the first time stays
		{Command{RevokeToken: &RevokeToken{ID: "nope", Time: 60}}, ErrNoToken},
	}
	s := New()
	for i, st := range steps {
		if err := s.Apply(st.cmd); !errors.Is(err, st.want) || (st.want == nil) != (err == nil) {
			t.Fatalf("step %d: %v, want %v", i, err, st.want)
		}
	}
	auth := []struct {
		secret string
		now    int64
		want   error
		id     string
	}{
		{"s1", 1000, nil, "t1"},
		{"s2", 99, nil, "t2"},
		{"s2", 100, ErrTokenExpired, ""},
		{"s3", 20, ErrTokenRevoked, ""}, // revoked is revoked, whenever asked
		{"unknown", 20, ErrTokenUnknown, ""},
	}
	for _, a := range auth {
		tok, err := s.Authenticate(hashOf(a.secret), a.now)
		if !errors.Is(err, a.want) || (a.want == nil) != (err == nil) || tok.ID != a.id || tok.Hash != nil {
			t.Fatalf("Authenticate(%s, %d) = %+v, %v; want %s, %v", a.secret, a.now, tok, err, a.id, a.want)
		}
	}
	if got := s.Tokens("acme"); len(got) != 2 || got[0].Hash != nil || got[0].ID != "t1" {
		t.Fatalf("acme's tokens: %+v", got)
	}
	if err := s.Apply(Command{DeleteTenant: &DeleteTenant{Name: "acme"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(hashOf("s1"), 1000); !errors.Is(err, ErrTokenUnknown) {
		t.Fatalf("a deleted tenant's token: %v", err)
	}
	if got := s.Tokens(""); len(got) != 1 || got[0].ID != "t3" {
		t.Fatalf("tokens after the tenant's deletion: %+v", got)
	}
	if err := s.Apply(Command{DeleteTenant: &DeleteTenant{Name: "acme"}}); !errors.Is(err, ErrNoTenant) {
		t.Fatalf("deleting it again: %v", err)
	}
	// Snapshots keep tenants and tokens, hashes included.
	b, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Restore(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Tenants(), s.Tenants()) || !reflect.DeepEqual(r.Tokens(""), s.Tokens("")) {
		t.Fatal("restored tenants or tokens differ")
	}
	if _, err := r.Authenticate(hashOf("s3"), 20); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("a restored revoked token: %v", err)
	}
}

// TestMaxTokens: past MaxTokens, a new token replaces the one that
// stopped working first, and is refused while all work.
func TestMaxTokens(t *testing.T) {
	s := New()
	if err := s.Apply(Command{CreateTenant: &CreateTenant{Name: "acme"}}); err != nil {
		t.Fatal(err)
	}
	for i := range MaxTokens {
		if err := s.Apply(token("t"+strconv.Itoa(i), "acme", RoleUser, "s"+strconv.Itoa(i), 10, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Apply(token("more", "acme", RoleUser, "more", 10, 0)); !errors.Is(err, ErrTooManyTokens) {
		t.Fatalf("past the limit: %v", err)
	}
	for _, id := range []string{"t9", "t3"} {
		if err := s.Apply(Command{RevokeToken: &RevokeToken{ID: id, Time: 20}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Apply(token("more", "acme", RoleUser, "more", 30, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(hashOf("s3"), 40); !errors.Is(err, ErrTokenUnknown) {
		t.Fatalf("the revoked token dropped first (t3, before t9 by ID): %v", err)
	}
	if _, err := s.Authenticate(hashOf("s9"), 40); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("the other revoked token: %v", err)
	}
}

// TestModuleTenants: a module records the tenants that stored it and
// whether the cluster's operator did; a node's copy claims nothing; a
// tenant's deletion drops its claim (refused while a job of its own runs
// the module), and the record goes with the last claim unless the
// operator stored it too; a tenant does not rename another's module.
func TestModuleTenants(t *testing.T) {
	s := New()
	add := func(tenant, name string, cp bool) {
		t.Helper()
		if err := s.Apply(Command{AddModule: &AddModule{Digest: digest, Node: "n1", Tenant: tenant, Name: name, Copy: cp}}); err != nil {
			t.Fatal(err)
		}
	}
	add("acme", "mine", false)
	add("globex", "theirs", false)
	add("", "", true) // a copy
	m, _ := s.Module(digest)
	if !reflect.DeepEqual(m.Tenants, []string{"acme", "globex"}) || m.Operator || m.Name != "mine" {
		t.Fatalf("module: %+v", m)
	}
	if err := s.Apply(tenantSubmit("acme", "j")); !errors.Is(err, ErrNoTenant) {
		t.Fatalf("a job of a tenant that does not exist: %v", err)
	}
	if err := s.Apply(Command{CreateTenant: &CreateTenant{Name: "acme"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(tenantSubmit("acme", "j")); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(Command{DeleteModule: &DeleteModule{Digest: digest, Tenant: "acme"}}); !errors.Is(err, ErrModuleInUse) {
		t.Fatalf("a tenant deletes a module its running job uses: %v", err)
	}
	if err := s.Apply(Command{DeleteModule: &DeleteModule{Digest: digest, Tenant: "globex"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(Command{DeleteModule: &DeleteModule{Digest: digest, Tenant: "globex"}}); !errors.Is(err, ErrNoModule) {
		t.Fatalf("a tenant deletes a module it no longer has: %v", err)
	}
	if err := s.Apply(Command{Stop: &Stop{ID: "acme:j", Time: 5}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(Command{DeleteModule: &DeleteModule{Digest: digest, Tenant: "acme"}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Module(digest); ok {
		t.Fatal("the record stays after its last claim went")
	}
	add("acme", "", false)
	add("", "", false) // the operator stores it too
	if err := s.Apply(Command{DeleteModule: &DeleteModule{Digest: digest, Tenant: "acme"}}); err != nil {
		t.Fatal(err)
	}
	if m, ok := s.Module(digest); !ok || !m.Operator || len(m.Tenants) != 0 {
		t.Fatalf("the operator's module after a tenant's deletion: %+v %v", m, ok)
	}
}

// TestTenantQuota: a tenant's jobs that have not ended are bounded by its
// quota; the refusal names the limit; nothing it holds is lost; a job
// that ends makes room; a lower quota keeps what runs and refuses what
// comes; other tenants and the operator are not bound by it.
func TestTenantQuota(t *testing.T) {
	s := New()
	for _, c := range []Command{{CreateTenant: &CreateTenant{Name: "acme", Quota: Quota{Jobs: 2}}}, {CreateTenant: &CreateTenant{Name: "globex"}}} {
		if err := s.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
	job := func(id, tenant string) error { return s.Apply(tenantSubmit(tenant, id)) }
	for _, id := range []string{"a1", "a2"} {
		if err := job(id, "acme"); err != nil {
			t.Fatal(err)
		}
	}
	if err := job("a3", "acme"); !errors.Is(err, ErrQuota) || !strings.Contains(err.Error(), "tenant acme has 2 jobs that have not ended") {
		t.Fatalf("past the quota: %v", err)
	}
	if err := job("g1", "globex"); err != nil {
		t.Fatalf("another tenant: %v", err)
	}
	if err := job("o1", ""); err != nil {
		t.Fatalf("the operator: %v", err)
	}
	if len(s.Jobs(func(j *Job) bool { return j.Tenant == "acme" })) != 2 {
		t.Fatal("a refused job lost one that ran")
	}
	if err := s.Apply(Command{Stop: &Stop{ID: "acme:a1", Time: 5}}); err != nil {
		t.Fatal(err)
	}
	if err := job("a3", "acme"); err != nil {
		t.Fatalf("after a job ended: %v", err)
	}
	if err := s.Apply(Command{SetQuota: &SetQuota{Name: "acme", Quota: Quota{Jobs: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := job("a4", "acme"); !errors.Is(err, ErrQuota) {
		t.Fatalf("past a lowered quota: %v", err)
	}
	if j, ok := s.Job("acme:a3"); !ok || j.State.Ended() {
		t.Fatalf("a lowered quota ended a job: %+v", j)
	}
	if err := s.Apply(Command{SetQuota: &SetQuota{Name: "nobody"}}); !errors.Is(err, ErrNoTenant) {
		t.Fatalf("the quota of no tenant: %v", err)
	}
}

// TestJobKeys checks that each tenant names its jobs in a space of its
// own: two tenants and the operator may each have a job "train", and a
// submission keyed for another tenant than its own is malformed.
func TestJobKeys(t *testing.T) {
	for _, c := range []struct {
		key   string
		valid bool
	}{
		{"train", true}, {"acme:train", true}, {"acme:", false}, {":train", false}, {"a:b:c", false},
		{"acme:tr ain", false}, {"-x:train", false}, {"", false}, {"acme:" + strings.Repeat("x", 64), true},
	} {
		if got := ValidJobKey(c.key); got != c.valid {
			t.Errorf("ValidJobKey(%q) = %v", c.key, got)
		}
	}
	if JobName("acme:train") != "train" || JobName("train") != "train" || JobKey("", "x") != "x" || JobKey("acme", "x") != "acme:x" {
		t.Fatal("JobKey and JobName disagree")
	}
	s := New()
	for _, n := range []string{"acme", "globex"} {
		if err := s.Apply(Command{CreateTenant: &CreateTenant{Name: n}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tenant := range []string{"acme", "globex", ""} {
		if err := s.Apply(tenantSubmit(tenant, "train")); err != nil {
			t.Fatalf("tenant %q's job train: %v", tenant, err)
		}
	}
	if err := s.Apply(tenantSubmit("acme", "train")); !errors.Is(err, ErrJobExists) {
		t.Fatalf("acme's second train: %v", err)
	}
	for _, c := range []struct{ key, tenant string }{{"train2", "acme"}, {"globex:x", "acme"}, {"acme:x", ""}} {
		sub := submit(c.key)
		sub.Submit.Tenant = c.tenant
		if err := s.Apply(sub); !errors.Is(err, ErrBadCommand) {
			t.Errorf("job %q of tenant %q: %v", c.key, c.tenant, err)
		}
	}
	if j, ok := s.Job("globex:train"); !ok || j.Tenant != "globex" {
		t.Fatalf("globex's train: %+v", j)
	}
	// An attempt's start records its run, which the state API filters by.
	if err := s.Apply(Command{Start: &Start{ID: "globex:train", Attempt: 1, Time: 20, Run: "0a1b2c3d4e5f6071"}}); err != nil {
		t.Fatal(err)
	}
	if j, _ := s.Job("globex:train"); !slices.Equal(j.Runs, []string{"0a1b2c3d4e5f6071"}) {
		t.Fatalf("runs: %v", j.Runs)
	}
	if err := s.Apply(Command{Start: &Start{ID: "acme:train", Attempt: 1, Run: "not/a run"}}); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("a malformed run: %v", err)
	}
}
