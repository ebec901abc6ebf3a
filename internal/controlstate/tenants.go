package controlstate

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Tenant is a party that shares the cluster: its jobs, modules and
// tokens are its own.
type Tenant struct {
	Name    string `cbor:"1,keyasint" json:"name"`
	Created int64  `cbor:"2,keyasint" json:"created"`
	Quota   Quota  `cbor:"3,keyasint,omitempty" json:"quota,omitzero"`
	// Keys are its module signing keys: with any, it runs only modules
	// signed with one (keys.go).
	Keys []TenantKey `cbor:"4,keyasint,omitempty" json:"keys,omitempty"`
}

// Quota bounds what a tenant may hold at once; a zero field is no bound.
type Quota struct {
	// Jobs bounds the tenant's jobs that have not ended.
	Jobs uint32 `cbor:"1,keyasint,omitempty" json:"jobs,omitempty"`
	// CPU, GPU and Memory bound what the tenant's running tasks and
	// actors hold across the cluster (CPU and GPU in the scheduler's
	// fixed point, 10,000 to one; Memory in bytes); Tasks bounds how
	// many run at once.
	CPU    int64  `cbor:"2,keyasint,omitempty" json:"cpu,omitempty"`
	GPU    int64  `cbor:"3,keyasint,omitempty" json:"gpu,omitempty"`
	Memory int64  `cbor:"4,keyasint,omitempty" json:"memory,omitempty"`
	Tasks  uint32 `cbor:"5,keyasint,omitempty" json:"tasks,omitempty"`
	// ObjectStore and Spill bound, on each node, the bytes of the
	// tenant's objects (in memory or spilled) and of its spill files.
	ObjectStore int64 `cbor:"6,keyasint,omitempty" json:"object_store,omitempty"`
	Spill       int64 `cbor:"7,keyasint,omitempty" json:"spill,omitempty"`
	// Actors bounds how many of the tenant's actors live at once (each
	// counts among Tasks too).
	Actors uint32 `cbor:"8,keyasint,omitempty" json:"actors,omitempty"`
}

// Quotas returns the tenants that have a quota on what runs, by name.
func (s *State) Quotas() map[string]Quota {
	out := map[string]Quota{}
	for name, t := range s.tenants {
		if q := t.Quota; q.CPU != 0 || q.GPU != 0 || q.Memory != 0 || q.Tasks != 0 || q.ObjectStore != 0 || q.Spill != 0 || q.Actors != 0 {
			out[name] = q
		}
	}
	return out
}

// Role is what a token's holder may do in its tenant.
type Role string

// The roles, from most to least: an admin manages the tenant's tokens
// too; an operator manages every job and module of the tenant; a user
// runs jobs and manages its own.
const (
	RoleAdmin    Role = "admin"
	RoleOperator Role = "operator"
	RoleUser     Role = "user"
)

// ValidRole reports whether r is a role.
func ValidRole(r Role) bool { return r == RoleAdmin || r == RoleOperator || r == RoleUser }

// Token is an API token's record. A token of no tenant (Tenant "") is
// the cluster's: an admin's, over every tenant and the cluster itself.
// Its secret is never stored: only the SHA-256 of the whole token, which
// is what a request's token is checked against. ID is public (listings, revocation); times are Unix
// milliseconds, Expires 0 for a token that does not expire.
type Token struct {
	ID      string `cbor:"1,keyasint" json:"id"`
	Tenant  string `cbor:"2,keyasint" json:"tenant"`
	Role    Role   `cbor:"3,keyasint" json:"role"`
	Hash    []byte `cbor:"4,keyasint" json:"-"`
	Created int64  `cbor:"5,keyasint" json:"created"`
	Expires int64  `cbor:"6,keyasint,omitempty" json:"expires,omitempty"`
	Revoked int64  `cbor:"7,keyasint,omitempty" json:"revoked,omitempty"`
	Note    string `cbor:"8,keyasint,omitempty" json:"note,omitempty"`
}

// CreateTenant records a tenant.
type CreateTenant struct {
	Name  string `cbor:"1,keyasint"`
	Time  int64  `cbor:"2,keyasint"`
	Quota Quota  `cbor:"3,keyasint,omitempty"`
}

// SetQuota replaces a tenant's quota. What the tenant holds past a lower
// quota stays; only what comes next is refused.
type SetQuota struct {
	Name  string `cbor:"1,keyasint"`
	Quota Quota  `cbor:"2,keyasint"`
}

// DeleteTenant removes a tenant and its tokens.
type DeleteTenant struct {
	Name string `cbor:"1,keyasint"`
}

// CreateToken records a token of a tenant.
type CreateToken struct {
	Token Token `cbor:"1,keyasint"`
}

// RevokeToken revokes a token at Time: from then on it authenticates no
// request, on any agent.
type RevokeToken struct {
	ID   string `cbor:"1,keyasint"`
	Time int64  `cbor:"2,keyasint"`
}

// Limits of tenants and tokens.
const (
	// MaxTenants bounds the tenants.
	MaxTenants = 1024
	// MaxTokens bounds the tokens kept; past it, creating one drops the
	// revoked or expired token that ended first, and is refused when none
	// has.
	MaxTokens = 16384
	// MaxNoteLength bounds a token's note.
	MaxNoteLength = 256
)

// Errors of tenants and tokens.
var (
	ErrTenantExists   = errors.New("controlstate: a tenant with that name exists")
	ErrNoTenant       = errors.New("controlstate: no tenant with that name")
	ErrTooManyTenants = errors.New("controlstate: too many tenants")
	ErrTokenExists    = errors.New("controlstate: a token with that ID or secret exists")
	ErrQuota          = errors.New("controlstate: past the tenant's quota")
	ErrNoToken        = errors.New("controlstate: no token with that ID")
	ErrTooManyTokens  = errors.New("controlstate: too many tokens")
	// ErrTokenUnknown, ErrTokenExpired and ErrTokenRevoked are
	// Authenticate's.
	ErrTokenUnknown = errors.New("controlstate: unknown token")
	ErrTokenExpired = errors.New("controlstate: the token has expired")
	ErrTokenRevoked = errors.New("controlstate: the token was revoked")
)

// tokenHashLen is a SHA-256's length.
const tokenHashLen = 32

func (s *State) createTenant(c *CreateTenant) error {
	if !ValidID(c.Name) {
		return fmt.Errorf("%w: tenant name %q (1 to 64 letters, digits, '-', '_' or '.')", ErrBadCommand, c.Name)
	}
	if _, ok := s.tenants[c.Name]; ok {
		return fmt.Errorf("%w: %q", ErrTenantExists, c.Name)
	}
	if len(s.tenants) >= MaxTenants {
		return fmt.Errorf("%w: %d", ErrTooManyTenants, len(s.tenants))
	}
	s.tenants[c.Name] = &Tenant{Name: c.Name, Created: c.Time, Quota: c.Quota}
	return nil
}

func (s *State) setQuota(c *SetQuota) error {
	if q := c.Quota; q.CPU < 0 || q.GPU < 0 || q.Memory < 0 {
		return fmt.Errorf("%w: a negative quota", ErrBadCommand)
	}
	t, ok := s.tenants[c.Name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoTenant, c.Name)
	}
	t.Quota = c.Quota
	return nil
}

// checkQuota refuses a job of tenant past its quota.
func (s *State) checkQuota(tenant string) error {
	t, ok := s.tenants[tenant]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoTenant, tenant)
	}
	if t.Quota.Jobs == 0 {
		return nil
	}
	var n uint32
	for _, j := range s.jobs {
		if j.Tenant == tenant && !j.State.Ended() {
			n++
		}
	}
	if n >= t.Quota.Jobs {
		return fmt.Errorf("%w: tenant %s has %d jobs that have not ended, its quota of jobs (stop one, or ask for a larger quota)", ErrQuota, tenant, n)
	}
	return nil
}

func (s *State) deleteTenant(c *DeleteTenant) error {
	if _, ok := s.tenants[c.Name]; !ok {
		return fmt.Errorf("%w: %q", ErrNoTenant, c.Name)
	}
	delete(s.tenants, c.Name)
	for id, t := range s.tokens {
		if t.Tenant == c.Name {
			s.dropToken(id)
		}
	}
	return nil
}

func (s *State) createToken(c *CreateToken) error {
	t := c.Token
	switch {
	case !ValidID(t.ID):
		return fmt.Errorf("%w: token ID %q", ErrBadCommand, t.ID)
	case !ValidRole(t.Role):
		return fmt.Errorf("%w: role %q (admin, operator or user)", ErrBadCommand, t.Role)
	case len(t.Hash) != tokenHashLen:
		return fmt.Errorf("%w: a token hash of %d bytes", ErrBadCommand, len(t.Hash))
	case len(t.Note) > MaxNoteLength:
		return fmt.Errorf("%w: a note of %d bytes, at most %d", ErrBadCommand, len(t.Note), MaxNoteLength)
	case t.Expires != 0 && t.Expires <= t.Created:
		return fmt.Errorf("%w: a token that expires before it is made", ErrBadCommand)
	case t.Revoked != 0:
		return fmt.Errorf("%w: a token made revoked", ErrBadCommand)
	}
	if t.Tenant == "" && t.Role != RoleAdmin {
		return fmt.Errorf("%w: a cluster token (of no tenant) is an admin's", ErrBadCommand)
	}
	if _, ok := s.tenants[t.Tenant]; !ok && t.Tenant != "" {
		return fmt.Errorf("%w: %q", ErrNoTenant, t.Tenant)
	}
	if _, ok := s.tokens[t.ID]; ok {
		return fmt.Errorf("%w: %q", ErrTokenExists, t.ID)
	}
	if _, ok := s.tokenHashes[string(t.Hash)]; ok {
		return fmt.Errorf("%w: the same secret", ErrTokenExists)
	}
	if len(s.tokens) >= MaxTokens {
		// Drop the token that stopped working first (then by ID).
		var gone *Token
		for _, o := range s.tokens {
			end := tokenEnd(o, t.Created)
			if end != 0 && (gone == nil || end < tokenEnd(gone, t.Created) || end == tokenEnd(gone, t.Created) && o.ID < gone.ID) {
				gone = o
			}
		}
		if gone == nil {
			return fmt.Errorf("%w: %d; revoke some (fabric token revoke)", ErrTooManyTokens, len(s.tokens))
		}
		s.dropToken(gone.ID)
	}
	rec := t
	rec.Hash = slices.Clone(t.Hash)
	s.tokens[t.ID] = &rec
	s.tokenHashes[string(rec.Hash)] = t.ID
	return nil
}

// tokenEnd is when a token stopped working, as of now (0: it works).
func tokenEnd(t *Token, now int64) int64 {
	switch {
	case t.Revoked != 0:
		return t.Revoked
	case t.Expires != 0 && t.Expires <= now:
		return t.Expires
	}
	return 0
}

func (s *State) revokeToken(c *RevokeToken) error {
	t, ok := s.tokens[c.ID]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoToken, c.ID)
	}
	if t.Revoked == 0 {
		t.Revoked = c.Time
	}
	return nil
}

func (s *State) dropToken(id string) {
	if t, ok := s.tokens[id]; ok {
		delete(s.tokenHashes, string(t.Hash))
		delete(s.tokens, id)
	}
}

// Authenticate returns the token whose SHA-256 is hash, if it works at
// now (Unix milliseconds): not expired, not revoked, of a tenant that
// exists.
func (s *State) Authenticate(hash []byte, now int64) (Token, error) {
	id, ok := s.tokenHashes[string(hash)]
	if !ok || len(hash) != tokenHashLen {
		return Token{}, ErrTokenUnknown
	}
	t := s.tokens[id]
	switch {
	case t.Revoked != 0:
		return Token{}, fmt.Errorf("%w (token %s)", ErrTokenRevoked, t.ID)
	case t.Expires != 0 && t.Expires <= now:
		return Token{}, fmt.Errorf("%w (token %s)", ErrTokenExpired, t.ID)
	}
	if _, ok := s.tenants[t.Tenant]; !ok && t.Tenant != "" {
		return Token{}, ErrTokenUnknown
	}
	c := *t
	c.Hash = nil
	return c, nil
}

// Tenant returns the tenant named name.
func (s *State) Tenant(name string) (Tenant, bool) {
	t, ok := s.tenants[name]
	if !ok {
		return Tenant{}, false
	}
	c := *t
	c.Keys = slices.Clone(t.Keys)
	return c, true
}

// Tenants returns the tenants, by name.
func (s *State) Tenants() []Tenant {
	out := make([]Tenant, 0, len(s.tenants))
	for _, t := range s.tenants {
		c := *t
		c.Keys = slices.Clone(t.Keys)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Tenant) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Tokens returns the tokens of tenant (all: ""), without their hashes,
// by tenant, then creation, then ID.
func (s *State) Tokens(tenant string) []Token {
	out := make([]Token, 0, len(s.tokens))
	for _, t := range s.tokens {
		if tenant == "" || t.Tenant == tenant {
			c := *t
			c.Hash = nil
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b Token) int {
		return cmp.Or(strings.Compare(a.Tenant, b.Tenant), cmp.Compare(a.Created, b.Created), strings.Compare(a.ID, b.ID))
	})
	return out
}

// tokensForSnapshot returns every token whole, by ID.
func (s *State) tokensForSnapshot() []Token {
	out := make([]Token, 0, len(s.tokens))
	for _, t := range s.tokens {
		c := *t
		c.Hash = bytes.Clone(t.Hash)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Token) int { return strings.Compare(a.ID, b.ID) })
	return out
}
