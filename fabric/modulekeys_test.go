//go:build linux

package fabric

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestModuleSigningAPI: once a tenant has a signing key, its jobs and
// uploads need a signature by one of its keys (another's, or one over
// another module, is refused, naming the rule), its unsigned modules stop
// being its, and removing the key stops what only it signed; a tenant
// without keys is not held to it.
func TestModuleSigningAPI(t *testing.T) {
	a := startJobsAgent(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := a.Client(a.APIToken())
	acme := tenantClient(t, ctx, a, TenantInfo{Name: "acme"})
	globex := tenantClient(t, ctx, a, TenantInfo{Name: "globex"})
	hostile := guestBytes(t, "internal/testguests/hostile")
	features := guestBytes(t, "internal/testguests/features")
	run := func(cl *Client, sig []byte) (string, error) {
		var out strings.Builder
		_, err := cl.SubmitWith(ctx, hostile, []string{"ticks", "1", "1"}, SubmitOptions{Signature: sig}, &out, &out)
		return out.String(), err
	}
	if out, err := run(acme, nil); err != nil || !strings.Contains(out, "ticks: done") {
		t.Fatalf("acme, without keys: %v\n%s", err, out)
	}
	if _, err := acme.Upload(ctx, bytes.NewReader(features), "features"); err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, stranger, _ := ed25519.GenerateKey(nil)
	k, err := admin.AddTenantKey(ctx, "acme", pub, "ci")
	if err != nil || k.ID != SigningKeyID(pub) {
		t.Fatalf("add key: %+v %v", k, err)
	}
	if ms, err := acme.Modules(ctx); err != nil || len(ms) != 0 {
		t.Fatalf("acme's unsigned modules after its first key: %+v %v", ms, err)
	}
	for name, sig := range map[string][]byte{"unsigned": nil, "a stranger's": SignModule(stranger, hostile), "another module's": SignModule(priv, features)} {
		_, err := run(acme, sig)
		if !errors.Is(err, ErrUnsigned) && (err == nil || !strings.Contains(err.Error(), "signed with one of its keys") && !strings.Contains(err.Error(), "not by any of its")) {
			t.Errorf("acme's job, %s: %v", name, err)
		}
	}
	if out, err := run(acme, SignModule(priv, hostile)); err != nil || !strings.Contains(out, "ticks: done") {
		t.Fatalf("acme's signed job: %v\n%s", err, out)
	}
	if out, err := run(globex, nil); err != nil || !strings.Contains(out, "ticks: done") {
		t.Fatalf("globex, without keys: %v\n%s", err, out)
	}
	if _, err := acme.Upload(ctx, bytes.NewReader(features), "features"); err == nil || !strings.Contains(err.Error(), "signed") {
		t.Fatalf("acme's unsigned upload: %v", err)
	}
	m, err := acme.UploadSigned(ctx, bytes.NewReader(features), "features", SignModule(priv, features))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acme.Call(ctx, m.Digest, "square", "[7]"); err != nil {
		t.Fatalf("a call of acme's signed module: %v", err)
	}
	ks, err := admin.TenantKeys(ctx, "acme")
	if err != nil || len(ks) != 1 || ks[0].Note != "ci" {
		t.Fatalf("keys: %+v %v", ks, err)
	}
	if err := admin.RemoveTenantKey(ctx, "acme", k.ID); err != nil {
		t.Fatal(err)
	}
	// Its last key gone, acme signs nothing: what it holds stays its.
	if _, err := acme.Call(ctx, m.Digest, "square", "[7]"); err != nil {
		t.Fatalf("a call once acme has no keys: %v", err)
	}
	pub2, priv2, _ := ed25519.GenerateKey(nil)
	if _, err := admin.AddTenantKey(ctx, "acme", pub2, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.Call(ctx, m.Digest, "square", "[7]"); err == nil || !strings.Contains(err.Error(), "no module") {
		t.Fatalf("a call of a module the new key did not sign: %v", err)
	}
	if _, err := run(acme, SignModule(priv2, hostile)); err != nil {
		t.Fatalf("acme's job signed with its new key: %v", err)
	}
	if err := admin.RemoveTenantKey(ctx, "acme", "0123456789abcdef"); !errors.Is(err, ErrNoKey) && (err == nil || !strings.Contains(err.Error(), "no such key")) {
		t.Fatalf("removing a key acme does not have: %v", err)
	}
	if _, err := acme.TenantKeys(ctx, "acme"); err == nil {
		t.Fatal("a tenant's user listed keys")
	}
}
