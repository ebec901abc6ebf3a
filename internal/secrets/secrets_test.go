package secrets

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
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

func TestTokenAndSaveRoundTrip(t *testing.T) {
	c := mustCreate(t)
	tok := c.Token()
	got, err := ParseToken(" " + tok + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.GossipKey, c.GossipKey) || !got.CA.Equal(c.CA) || !got.caKey.Equal(c.caKey) {
		t.Fatal("token did not carry the same secrets")
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
	if loaded.Token() != tok {
		t.Fatal("saved and loaded secrets differ")
	}
}

func TestParseTokenRejects(t *testing.T) {
	other := mustCreate(t)
	good := mustCreate(t).Token()
	cases := map[string]string{
		"empty":         "",
		"wrong prefix":  "fabric0." + good[len(tokenPrefix):],
		"not base64":    tokenPrefix + "!!!",
		"truncated":     good[:len(good)-10],
		"trailing data": good + "AAAA",
		"mismatched CA": spliceCA(t, good, other),
	}
	for name, tok := range cases {
		if _, err := ParseToken(tok); !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: %v, want ErrBadToken", name, err)
		}
	}
}

// spliceCA returns tok with its CA certificate replaced by other's.
func spliceCA(t *testing.T, tok string, other *Cluster) string {
	t.Helper()
	c, err := ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	c.caDER = other.caDER
	return c.Token()
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
	n1, err := c.NodeCertificate("node-1", []string{"127.0.0.1", "host1"})
	if err != nil {
		t.Fatal(err)
	}
	n2, err := c.NodeCertificate("node-2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if serr, cerr := handshake(t, c.TLSConfig(n1), c.TLSConfig(n2)); serr != nil || cerr != nil {
		t.Fatalf("members could not talk: server %v, client %v", serr, cerr)
	}

	stranger := mustCreate(t)
	s1, err := stranger.NodeCertificate("node-x", nil)
	if err != nil {
		t.Fatal(err)
	}
	// A stranger connecting to a member, and a member connecting to a stranger.
	trusting := stranger.TLSConfig(s1)
	trusting.VerifyPeerCertificate = nil // a stranger that accepts any server, to reach the member's check
	if serr, _ := handshake(t, c.TLSConfig(n1), trusting); serr == nil || !strings.Contains(serr.Error(), "not from this cluster") {
		t.Fatalf("member accepted a stranger's certificate: %v", serr)
	}
	if _, cerr := handshake(t, stranger.TLSConfig(s1), c.TLSConfig(n1)); cerr == nil {
		t.Fatal("member trusted a stranger's server")
	}
	// A client without any certificate.
	noCert := c.TLSConfig(tls.Certificate{})
	noCert.Certificates = nil
	if serr, _ := handshake(t, c.TLSConfig(n1), noCert); serr == nil {
		t.Fatal("member accepted a client without a certificate")
	}
}

func FuzzParseToken(f *testing.F) {
	c, err := Create()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c.Token())
	f.Add(tokenPrefix)
	f.Add(tokenPrefix + "AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseToken(s)
		if err != nil {
			return
		}
		if again, err := ParseToken(got.Token()); err != nil || !bytes.Equal(again.GossipKey, got.GossipKey) {
			t.Fatalf("accepted token does not round-trip: %v", err)
		}
	})
}
