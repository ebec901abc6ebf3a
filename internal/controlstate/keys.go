package controlstate

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Module signing. A tenant that has signing keys (ed25519 public keys)
// runs only modules signed with one of them: a tenant's claim on a module
// (AddModule with the tenant, which a job's submission and an upload
// make) is taken only with a signature of the module's digest by one of
// the tenant's keys, and records which key signed (Module.Signers). Adding
// a tenant's first key, or removing the key a module was signed with,
// drops the tenant's claims that no key of its signs, so that the tenant
// no longer sees, calls or runs those modules.

// TenantKey is a tenant's module signing key.
type TenantKey struct {
	// ID names the key: the first 16 hex digits of its SHA-256.
	ID    string `cbor:"1,keyasint" json:"id"`
	Key   []byte `cbor:"2,keyasint" json:"key"` // ed25519 public key
	Added int64  `cbor:"3,keyasint" json:"added"`
	Note  string `cbor:"4,keyasint,omitempty" json:"note,omitempty"`
}

// AddTenantKey adds a module signing key to a tenant.
type AddTenantKey struct {
	Tenant string `cbor:"1,keyasint"`
	Key    []byte `cbor:"2,keyasint"`
	Note   string `cbor:"3,keyasint,omitempty"`
	Time   int64  `cbor:"4,keyasint"`
}

// RemoveTenantKey removes a tenant's signing key.
type RemoveTenantKey struct {
	Tenant string `cbor:"1,keyasint"`
	ID     string `cbor:"2,keyasint"`
}

// MaxTenantKeys bounds a tenant's signing keys.
const MaxTenantKeys = 16

// Errors of module signing.
var (
	ErrUnsigned   = errors.New("controlstate: the module is not signed with a key of the tenant")
	ErrNoKey      = errors.New("controlstate: no such key of the tenant")
	ErrKeyExists  = errors.New("controlstate: the tenant has that key")
	ErrTooManyKey = errors.New("controlstate: too many keys")
)

// KeyID names an ed25519 public key.
func KeyID(key []byte) string {
	h := sha256.Sum256(key)
	return hex.EncodeToString(h[:8])
}

// ModuleSigningMessage is what a module's signature signs: its SHA-256
// digest (hex) under a fixed prefix, so that the signature means nothing
// else.
func ModuleSigningMessage(digest string) []byte {
	return []byte("fabric module v1\n" + digest)
}

// signer returns the ID of the tenant's key that made sig over the
// module's digest, or "".
func (t *Tenant) signer(digest string, sig []byte) string {
	if len(sig) != ed25519.SignatureSize {
		return ""
	}
	msg := ModuleSigningMessage(digest)
	for _, k := range t.Keys {
		if ed25519.Verify(k.Key, msg, sig) {
			return k.ID
		}
	}
	return ""
}

// signerKey is how Module.Signers names a tenant's key.
func signerKey(tenant, id string) string { return tenant + "/" + id }

// checkSigned returns the signer entry of c's claim, or "" when the
// tenant signs nothing, or an error when its keys do not sign the module.
func (s *State) checkSigned(c *AddModule) (string, error) {
	if c.Copy || c.Tenant == "" {
		return "", nil
	}
	t, ok := s.tenants[c.Tenant]
	if !ok || len(t.Keys) == 0 {
		return "", nil
	}
	if len(c.Signature) == 0 {
		return "", fmt.Errorf("%w: tenant %s runs only modules signed with one of its keys; sign it (fabric module sign) and send the signature", ErrUnsigned, c.Tenant)
	}
	id := t.signer(c.Digest, c.Signature)
	if id == "" {
		return "", fmt.Errorf("%w: tenant %s: the signature is not by any of its %d keys (fabric tenant key list %s)", ErrUnsigned, c.Tenant, len(t.Keys), c.Tenant)
	}
	return signerKey(c.Tenant, id), nil
}

func (s *State) addTenantKey(c *AddTenantKey) error {
	t, ok := s.tenants[c.Tenant]
	switch {
	case !ok:
		return fmt.Errorf("%w: %q", ErrNoTenant, c.Tenant)
	case len(c.Key) != ed25519.PublicKeySize:
		return fmt.Errorf("%w: a key of %d bytes; an ed25519 public key has %d", ErrBadCommand, len(c.Key), ed25519.PublicKeySize)
	case len(c.Note) > MaxNoteLength:
		return fmt.Errorf("%w: a note of %d bytes", ErrBadCommand, len(c.Note))
	case len(t.Keys) >= MaxTenantKeys:
		return fmt.Errorf("%w: tenant %s has %d, the most it may", ErrTooManyKey, c.Tenant, len(t.Keys))
	}
	id := KeyID(c.Key)
	if slices.ContainsFunc(t.Keys, func(k TenantKey) bool { return k.ID == id }) {
		return fmt.Errorf("%w: %s", ErrKeyExists, id)
	}
	t.Keys = append(t.Keys, TenantKey{ID: id, Key: slices.Clone(c.Key), Added: c.Time, Note: c.Note})
	s.dropUnsignedClaims(c.Tenant)
	return nil
}

func (s *State) removeTenantKey(c *RemoveTenantKey) error {
	t, ok := s.tenants[c.Tenant]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoTenant, c.Tenant)
	}
	i := slices.IndexFunc(t.Keys, func(k TenantKey) bool { return k.ID == c.ID })
	if i < 0 {
		return fmt.Errorf("%w: %q", ErrNoKey, c.ID)
	}
	t.Keys = slices.Delete(t.Keys, i, i+1)
	gone := signerKey(c.Tenant, c.ID)
	for _, m := range s.modules {
		m.Signers = slices.DeleteFunc(m.Signers, func(k string) bool { return k == gone })
	}
	if len(t.Keys) > 0 {
		s.dropUnsignedClaims(c.Tenant)
	}
	return nil
}

// dropUnsignedClaims removes tenant's claims on modules that none of its
// keys signed (a module no one claims any more goes, as DeleteModule
// would have it).
func (s *State) dropUnsignedClaims(tenant string) {
	prefix := tenant + "/"
	for digest, m := range s.modules {
		i, found := slices.BinarySearch(m.Tenants, tenant)
		if !found || slices.ContainsFunc(m.Signers, func(k string) bool { return strings.HasPrefix(k, prefix) }) {
			continue
		}
		m.Tenants = slices.Delete(m.Tenants, i, i+1)
		if len(m.Tenants) == 0 && !m.Operator && !s.moduleInUse(digest) {
			delete(s.modules, digest)
		}
	}
}

// checkRunnable refuses a job of a tenant that has keys whose module no
// key of the tenant's signed.
func (s *State) checkRunnable(tenant, digest string) error {
	t, ok := s.tenants[tenant]
	if !ok || len(t.Keys) == 0 {
		return nil
	}
	prefix := tenant + "/"
	if m, ok := s.modules[digest]; ok && slices.ContainsFunc(m.Signers, func(k string) bool { return strings.HasPrefix(k, prefix) }) {
		return nil
	}
	return fmt.Errorf("%w: tenant %s runs only modules signed with one of its keys", ErrUnsigned, tenant)
}

// moduleInUse reports whether a job that has not ended runs the module.
func (s *State) moduleInUse(digest string) bool {
	for _, j := range s.jobs {
		if j.Digest == digest && !j.State.Ended() {
			return true
		}
	}
	return false
}
