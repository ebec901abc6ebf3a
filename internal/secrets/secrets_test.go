package secrets

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func mustCreate(t *testing.T) *Cluster {
	t.Helper()
	c, err := Create()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestBundleAndSaveRoundTrip(t *testing.T) {
	c := mustCreate(t)
	tok := c.Bundle()
	got, err := ParseBundle(" " + tok + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.GossipKey, c.GossipKey) || !got.CA.Equal(c.CA) || !got.caKey.Equal(c.caKey) {
		t.Fatal("bundle did not carry the same secrets")
	}
	dir := t.TempDir()
	if _, err := Load(dir); !errors.Is(err, ErrNotFound) {
		t.Fatalf("load from an empty dir: %v", err)
	}
	if err := c.Save(dir); err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Bundle() != tok || !loaded.CanSign() {
		t.Fatal("saved and loaded secrets differ")
	}
	// A member that is not a server keeps no CA key, on disk or in its
	// bundle.
	member := c.WithoutCAKey()
	mdir := t.TempDir()
	if err := member.Save(mdir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mdir, caKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a member saved a CA key: %v", err)
	}
	ml, err := Load(mdir)
	if err != nil || ml.CanSign() || !ml.SameCluster(c) {
		t.Fatalf("member's secrets: %v, can sign %v", err, ml != nil && ml.CanSign())
	}
	if _, err := member.Sign(nil, "n", false, time.Hour, time.Now()); !errors.Is(err, ErrNoCAKey) {
		t.Fatalf("a member signed: %v", err)
	}
	if _, err := member.NewJoinToken("j", time.Now().Add(time.Hour), nil); !errors.Is(err, ErrNoCAKey) {
		t.Fatalf("a member made a join token: %v", err)
	}
}

func TestParseBundleRejects(t *testing.T) {
	good := mustCreate(t).Bundle()
	cases := map[string]string{
		"empty":         "",
		"wrong prefix":  "fabric0." + good[len(bundlePrefix):],
		"not base64":    bundlePrefix + "!!!",
		"truncated":     good[:len(good)-10],
		"trailing data": good + "AAAA",
		"join token":    mustJoinToken(t, mustCreate(t), "j1", time.Hour),
	}
	for name, tok := range cases {
		if _, err := ParseBundle(tok); !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: %v, want ErrBadToken", name, err)
		}
	}
}

func mustJoinToken(t testing.TB, c *Cluster, id string, ttl time.Duration) string {
	t.Helper()
	s, err := c.NewJoinToken(id, time.Now().Add(ttl), []string{"10.0.0.1:7947", "10.0.0.2:7947"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestJoinToken: a join token carries its ID, a certificate of the
// cluster named for it, the CA and the servers' addresses; one spliced
// from two clusters is refused.
func TestJoinToken(t *testing.T) {
	c := mustCreate(t)
	s := mustJoinToken(t, c, "j1", time.Hour)
	jt, err := ParseJoinToken(s)
	if err != nil {
		t.Fatal(err)
	}
	if jt.ID != "j1" || !jt.CA.Equal(c.CA) || len(jt.Servers) != 2 || jt.Cert.Leaf.Subject.CommonName != JoinPrefix+"j1" {
		t.Fatalf("parsed %+v", jt)
	}
	if d := time.Until(jt.Expires()); d < 59*time.Minute || d > time.Hour {
		t.Errorf("expires in %s, want an hour", d)
	}
	other := mustCreate(t)
	b, _ := decodeLine(s, joinTokenPrefix)
	parts, _ := readParts(b, 5)
	parts[3] = other.caDER
	spliced := joinTokenPrefix + base64.RawURLEncoding.EncodeToString(appendParts(nil, parts...))
	if _, err := ParseJoinToken(spliced); !errors.Is(err, ErrBadToken) {
		t.Errorf("a token with another cluster's CA: %v, want ErrBadToken", err)
	}
	if _, err := ParseJoinToken(c.Bundle()); !errors.Is(err, ErrBadToken) {
		t.Errorf("a bundle as a join token: %v, want ErrBadToken", err)
	}
}

// TestSign: a server signs a node's request for the node it names, and
// marks servers; bad requests are refused.
func TestSign(t *testing.T) {
	c := mustCreate(t)
	key, req, err := NewRequest("n1", []string{"127.0.0.1", "host1"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	der, err := c.Sign(req, "n1", true, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := Pair(der, key)
	if err != nil {
		t.Fatal(err)
	}
	if !IsServer(cert.Leaf) || cert.Leaf.Subject.CommonName != "n1" || !cert.Leaf.NotAfter.Equal(now.Add(time.Hour).Truncate(time.Second)) {
		t.Errorf("certificate: server %v, name %q, expires %s", IsServer(cert.Leaf), cert.Leaf.Subject.CommonName, cert.Leaf.NotAfter)
	}
	if !slices.Contains(cert.Leaf.DNSNames, "host1") || len(cert.Leaf.IPAddresses) != 1 {
		t.Errorf("hosts: %v %v", cert.Leaf.DNSNames, cert.Leaf.IPAddresses)
	}
	dir := t.TempDir()
	if err := SaveNode(dir, cert); err != nil {
		t.Fatal(err)
	}
	if back, err := LoadNode(dir); err != nil || !back.Leaf.Equal(cert.Leaf) {
		t.Fatalf("LoadNode: %v", err)
	}
	plain, _ := c.Sign(req, "n1", false, time.Hour, now)
	if pc, _ := x509.ParseCertificate(plain); IsServer(pc) {
		t.Error("a node's certificate says server")
	}
	many := make([]string, MaxHosts+1)
	for i := range many {
		many[i] = "h" + strconv.Itoa(i)
	}
	_, manyReq, _ := NewRequest("n2", many)
	_, joinReq, _ := NewRequest(JoinPrefix+"x", nil)
	bad := map[string]struct {
		req  []byte
		node string
	}{
		"another node's name": {req, "n2"},
		"garbage":             {[]byte("garbage"), "n1"},
		"too many hosts":      {manyReq, "n2"},
		"a join name":         {joinReq, JoinPrefix + "x"},
	}
	for name, b := range bad {
		if _, err := c.Sign(b.req, b.node, false, time.Hour, now); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: %v, want ErrBadRequest", name, err)
		}
	}
}

// handshake runs a TLS handshake over loopback TCP (buffered, unlike
// net.Pipe, so that a side that fails and stops reading cannot stall the
// other) and returns each side's error.
func handshake(t *testing.T, server, client *tls.Config) (error, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		s := tls.Server(c, server)
		err = s.Handshake()
		if err == nil {
			// TLS 1.3: the client's certificate is checked after the
			// client's handshake returns; a read surfaces the verdict.
			_, err = s.Read(make([]byte, 1))
		}
		errc <- err
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	c := tls.Client(conn, client)
	cerr := c.Handshake()
	if cerr == nil {
		_, cerr = c.Write([]byte{1})
	}
	serr := <-errc
	if cerr == nil {
		// The write may succeed before the server's rejection arrives.
		_, cerr = c.Read(make([]byte, 1))
		if errors.Is(cerr, io.EOF) || isTimeout(cerr) {
			cerr = nil
		}
	}
	return serr, cerr
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestMutualTLS(t *testing.T) {
	c := mustCreate(t)
	n1, err := c.NodeCertificate("node-1", []string{"127.0.0.1", "host1"}, false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	n2, err := c.NodeCertificate("node-2", nil, false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if serr, cerr := handshake(t, c.TLSConfig(n1, TLSOptions{}), c.TLSConfig(n2, TLSOptions{})); serr != nil || cerr != nil {
		t.Fatalf("members could not talk: server %v, client %v", serr, cerr)
	}

	stranger := mustCreate(t)
	s1, err := stranger.NodeCertificate("node-x", nil, false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A stranger connecting to a member, and a member connecting to a stranger.
	trusting := stranger.TLSConfig(s1, TLSOptions{})
	trusting.VerifyPeerCertificate = nil // a stranger that accepts any server, to reach the member's check
	if serr, _ := handshake(t, c.TLSConfig(n1, TLSOptions{}), trusting); serr == nil || !strings.Contains(serr.Error(), "not from this cluster") {
		t.Fatalf("member accepted a stranger's certificate: %v", serr)
	}
	if _, cerr := handshake(t, stranger.TLSConfig(s1, TLSOptions{}), c.TLSConfig(n1, TLSOptions{})); cerr == nil {
		t.Fatal("member trusted a stranger's server")
	}
	// A client without any certificate.
	noCert := c.TLSConfig(tls.Certificate{}, TLSOptions{})
	noCert.Certificates = nil
	if serr, _ := handshake(t, c.TLSConfig(n1, TLSOptions{}), noCert); serr == nil {
		t.Fatal("member accepted a client without a certificate")
	}
}

// TestRefuseAndJoinCertificate: a refused peer (a revoked node) cannot
// complete a handshake; a join token's certificate can reach a member,
// whose TLS names it as a join.
func TestRefuseAndJoinCertificate(t *testing.T) {
	c := mustCreate(t)
	n1, _ := c.NodeCertificate("node-1", nil, false, time.Hour)
	n2, _ := c.NodeCertificate("node-2", nil, false, time.Hour)
	refuse2 := TLSOptions{Refuse: func(cert *x509.Certificate) error {
		if cert.Subject.CommonName == "node-2" {
			return errors.New("node-2 was revoked")
		}
		return nil
	}}
	if serr, _ := handshake(t, c.TLSConfig(n1, refuse2), c.TLSConfig(n2, TLSOptions{})); serr == nil || !strings.Contains(serr.Error(), "revoked") {
		t.Fatalf("a refused client: %v", serr)
	}
	if _, cerr := handshake(t, c.TLSConfig(n2, TLSOptions{}), c.TLSConfig(n1, refuse2)); cerr == nil {
		t.Fatal("a client reached a refused server")
	}
	jt, err := ParseJoinToken(mustJoinToken(t, c, "j1", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var named string
	seen := TLSOptions{Refuse: func(cert *x509.Certificate) error { named = cert.Subject.CommonName; return nil }}
	if serr, cerr := handshake(t, c.TLSConfig(n1, seen), jt.TLSConfig()); serr != nil || cerr != nil || named != JoinPrefix+"j1" {
		t.Fatalf("a join: server %v, client %v, named %q", serr, cerr, named)
	}
	// A join token of another cluster trusts none of this one's servers.
	ojt, _ := ParseJoinToken(mustJoinToken(t, mustCreate(t), "j2", time.Hour))
	if _, cerr := handshake(t, c.TLSConfig(n1, TLSOptions{}), ojt.TLSConfig()); cerr == nil {
		t.Fatal("a join token trusted another cluster's server")
	}
}

func FuzzParseJoinToken(f *testing.F) {
	c, err := Create()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(mustJoinToken(f, c, "j1", time.Hour))
	f.Add(joinTokenPrefix)
	f.Add(joinTokenPrefix + "AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		jt, err := ParseJoinToken(s)
		if err != nil {
			return
		}
		if jt.Cert.Leaf == nil || jt.CA == nil {
			t.Fatal("accepted token lacks its certificate or CA")
		}
	})
}

func FuzzParseBundle(f *testing.F) {
	c, err := Create()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c.Bundle())
	f.Add(c.WithoutCAKey().Bundle())
	f.Add(bundlePrefix + "AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseBundle(s)
		if err != nil {
			return
		}
		if again, err := ParseBundle(got.Bundle()); err != nil || !bytes.Equal(again.GossipKey, got.GossipKey) {
			t.Fatalf("accepted bundle does not round-trip: %v", err)
		}
	})
}

// TestGrant: a grant verifies for its job, tenant and root only, and
// only under its cluster's CA; a member cannot sign one.
func TestGrant(t *testing.T) {
	c := mustCreate(t)
	g, err := c.SignGrant("j1", "acme", "n1", "m1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WithoutCAKey().VerifyGrant("j1", "acme", "n1", "m1", g); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() error{
		"another tenant": func() error { return c.VerifyGrant("j1", "globex", "n1", "m1", g) },
		"another root":   func() error { return c.VerifyGrant("j1", "acme", "n2", "m1", g) },
		"another job":    func() error { return c.VerifyGrant("j2", "acme", "n1", "m1", g) },
		"no grant":       func() error { return c.VerifyGrant("j1", "acme", "n1", "m1", nil) },
		"garbage":        func() error { return c.VerifyGrant("j1", "acme", "n1", "m1", []byte("garbage")) },
		"another CA":     func() error { return mustCreate(t).VerifyGrant("j1", "acme", "n1", "m1", g) },
		"split fields":   func() error { return c.VerifyGrant("j1acme", "", "n1", "m1", g) },
		"another module": func() error { return c.VerifyGrant("j1", "acme", "n1", "m2", g) },
	} {
		if err := f(); !errors.Is(err, ErrBadGrant) {
			t.Errorf("%s: %v, want ErrBadGrant", name, err)
		}
	}
	if _, err := c.WithoutCAKey().SignGrant("j1", "acme", "n1", "m1"); !errors.Is(err, ErrNoCAKey) {
		t.Errorf("a member signed a grant: %v", err)
	}
}
