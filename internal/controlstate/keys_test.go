package controlstate

import (
	"crypto/ed25519"
	"errors"
	"reflect"
	"testing"
)

// TestModuleSigning: a tenant with keys claims (so sees and runs) only
// modules signed with one of them; its first key drops its unsigned
// claims, and removing a key drops the claims only that key signed.
// Tenants without keys, and the operator, are not held to it.
func TestModuleSigning(t *testing.T) {
	s := New()
	mustApply := func(c Command) {
		t.Helper()
		if err := s.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"acme", "globex"} {
		mustApply(Command{CreateTenant: &CreateTenant{Name: name}})
	}
	pub1, priv1, _ := ed25519.GenerateKey(nil)
	pub2, priv2, _ := ed25519.GenerateKey(nil)
	_, stranger, _ := ed25519.GenerateKey(nil)
	sign := func(k ed25519.PrivateKey, d string) []byte { return ed25519.Sign(k, ModuleSigningMessage(d)) }
	const other = "3cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	add := func(tenant, d string, sig []byte) error {
		return s.Apply(Command{AddModule: &AddModule{Digest: d, Node: "n1", Tenant: tenant, Signature: sig}})
	}
	if err := add("acme", digest, nil); err != nil {
		t.Fatalf("a tenant without keys: %v", err)
	}
	mustApply(Command{AddTenantKey: &AddTenantKey{Tenant: "acme", Key: pub1, Note: "ci", Time: 7}})
	if m, ok := s.Module(digest); ok {
		t.Fatalf("acme's unsigned module stays after its first key: %+v", m)
	}

	tests := []struct {
		name   string
		tenant string
		sig    []byte
		want   error
	}{
		{"unsigned", "acme", nil, ErrUnsigned},
		{"by a stranger's key", "acme", sign(stranger, digest), ErrUnsigned},
		{"over another module", "acme", sign(priv1, other), ErrUnsigned},
		{"garbage", "acme", []byte("not a signature"), ErrUnsigned},
		{"another tenant's, unsigned", "globex", nil, nil},
		{"signed", "acme", sign(priv1, digest), nil},
	}
	for _, tt := range tests {
		if err := add(tt.tenant, digest, tt.sig); !errors.Is(err, tt.want) && (err != nil || tt.want != nil) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	m, _ := s.Module(digest)
	id1 := KeyID(pub1)
	if !reflect.DeepEqual(m.Tenants, []string{"acme", "globex"}) || !reflect.DeepEqual(m.Signers, []string{"acme/" + id1}) {
		t.Fatalf("the module: %+v", m)
	}
	mustApply(tenantSubmit("acme", "j1"))
	// A job of a module the tenant's keys did not sign, though another
	// claims it, is refused.
	if err := s.Apply(Command{AddModule: &AddModule{Digest: other, Node: "n1"}}); err != nil {
		t.Fatal(err)
	}
	sub := tenantSubmit("acme", "j2")
	sub.Submit.Digest = other
	if err := s.Apply(sub); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("acme's job of the operator's unsigned module: %v", err)
	}

	// A second key; removing the first drops what only it signed.
	mustApply(Command{AddTenantKey: &AddTenantKey{Tenant: "acme", Key: pub2, Time: 8}})
	if err := add("acme", other, sign(priv2, other)); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(Command{AddTenantKey: &AddTenantKey{Tenant: "acme", Key: pub2}}); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("the same key again: %v", err)
	}
	if err := s.Apply(Command{AddTenantKey: &AddTenantKey{Tenant: "acme", Key: pub2[:16]}}); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("a short key: %v", err)
	}
	b, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Restore(b)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Tenant("acme"); len(got.Keys) != 2 || got.Keys[0].Note != "ci" {
		t.Fatalf("restored keys: %+v", got.Keys)
	}
	mustApply(Command{RemoveTenantKey: &RemoveTenantKey{Tenant: "acme", ID: id1}})
	m, _ = s.Module(digest)
	if !reflect.DeepEqual(m.Tenants, []string{"globex"}) || len(m.Signers) != 0 {
		t.Fatalf("after its key went, the module: %+v", m)
	}
	if m, _ := s.Module(other); !reflect.DeepEqual(m.Tenants, []string{"acme"}) {
		t.Fatalf("the module the other key signed: %+v", m)
	}
	if err := s.Apply(Command{RemoveTenantKey: &RemoveTenantKey{Tenant: "acme", ID: id1}}); !errors.Is(err, ErrNoKey) {
		t.Fatalf("a key removed twice: %v", err)
	}
	for i := 0; i < MaxTenantKeys-1; i++ {
		pub, _, _ := ed25519.GenerateKey(nil)
		mustApply(Command{AddTenantKey: &AddTenantKey{Tenant: "globex", Key: pub}})
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	mustApply(Command{AddTenantKey: &AddTenantKey{Tenant: "globex", Key: pub}})
	if err := s.Apply(Command{AddTenantKey: &AddTenantKey{Tenant: "globex", Key: pub1}}); !errors.Is(err, ErrTooManyKey) {
		t.Fatalf("past %d keys: %v", MaxTenantKeys, err)
	}
}
