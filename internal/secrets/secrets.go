// Package secrets holds a cluster's shared secrets: the key that encrypts
// gossip and the certificate authority that signs every node's TLS
// certificate. The first agent creates them in its data directory and
// prints a join token that carries them; an agent started with the token
// joins the same cluster. A node without them can neither read the gossip
// nor complete a TLS handshake with a member.
package secrets

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Errors of the package.
var (
	// ErrBadToken means a join token could not be read.
	ErrBadToken = errors.New("secrets: malformed join token")
	// ErrNotFound means the data directory holds no cluster secrets yet.
	ErrNotFound = errors.New("secrets: no cluster secrets in the data directory")
)

// tokenPrefix starts every join token; the digit is the token's version.
const tokenPrefix = "fabric1."

// GossipKeySize is the length of the gossip key (AES-256).
const GossipKeySize = 32

// Cluster is the set of secrets all members share.
type Cluster struct {
	GossipKey []byte
	CA        *x509.Certificate
	caDER     []byte
	caKey     *ecdsa.PrivateKey
}

// Create makes new cluster secrets: a random gossip key and a CA.
func Create() (*Cluster, error) {
	key := make([]byte, GossipKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Fabric cluster CA", Organization: []string{"fabric"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	return fromParts(key, der, caKey)
}

func fromParts(key, caDER []byte, caKey *ecdsa.PrivateKey) (*Cluster, error) {
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	if !ca.IsCA {
		return nil, errors.New("secrets: the CA certificate is not a CA")
	}
	pub, ok := ca.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&caKey.PublicKey) {
		return nil, errors.New("secrets: the CA key does not match its certificate")
	}
	return &Cluster{GossipKey: key, CA: ca, caDER: caDER, caKey: caKey}, nil
}

func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// Token encodes the secrets as one line to pass to joining agents. Anyone
// holding it can join the cluster and mint node certificates: keep it as
// secret as the data directory.
func (c *Cluster) Token() string {
	caKey, err := x509.MarshalECPrivateKey(c.caKey)
	if err != nil {
		panic(err) // a P-256 key always marshals
	}
	var b []byte
	for _, part := range [][]byte{c.GossipKey, caKey, c.caDER} {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// ParseToken reads a token made by Token.
func ParseToken(s string) (*Cluster, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, tokenPrefix) {
		return nil, fmt.Errorf("%w: it does not start with %q", ErrBadToken, tokenPrefix)
	}
	b, err := base64.RawURLEncoding.DecodeString(s[len(tokenPrefix):])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	var parts [3][]byte
	for i := range parts {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: truncated", ErrBadToken)
		}
		parts[i], b = b[k:k+int(n)], b[k+int(n):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d stray bytes", ErrBadToken, len(b))
	}
	if len(parts[0]) != GossipKeySize {
		return nil, fmt.Errorf("%w: gossip key of %d bytes", ErrBadToken, len(parts[0]))
	}
	caKey, err := x509.ParseECPrivateKey(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: CA key: %v", ErrBadToken, err)
	}
	c, err := fromParts(parts[0], parts[2], caKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	return c, nil
}

// File names in the data directory.
const (
	gossipFile = "gossip.key"
	caFile     = "ca.pem"
	caKeyFile  = "ca-key.pem"
)

// Save writes the secrets into dir (created if missing), readable by the
// owner only.
func (c *Cluster) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caKey, err := x509.MarshalECPrivateKey(c.caKey)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		gossipFile: []byte(base64.StdEncoding.EncodeToString(c.GossipKey) + "\n"),
		caFile:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.caDER}),
		caKeyFile:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: caKey}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Load reads secrets saved by Save; ErrNotFound when there are none.
func Load(dir string) (*Cluster, error) {
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }
	kb, err := read(gossipFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (%s)", ErrNotFound, dir)
	}
	if err != nil {
		return nil, err
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(kb)))
	if err != nil || len(key) != GossipKeySize {
		return nil, fmt.Errorf("secrets: %s is not a %d-byte base64 key", gossipFile, GossipKeySize)
	}
	block := func(name string) ([]byte, error) {
		b, err := read(name)
		if err != nil {
			return nil, err
		}
		p, _ := pem.Decode(b)
		if p == nil {
			return nil, fmt.Errorf("secrets: %s holds no PEM block", name)
		}
		return p.Bytes, nil
	}
	caDER, err := block(caFile)
	if err != nil {
		return nil, err
	}
	keyDER, err := block(caKeyFile)
	if err != nil {
		return nil, err
	}
	caKey, err := x509.ParseECPrivateKey(keyDER)
	if err != nil {
		return nil, fmt.Errorf("secrets: %s: %w", caKeyFile, err)
	}
	return fromParts(key, caDER, caKey)
}

// NodeCertificate issues a certificate for a node, valid for TLS as client
// and server, naming the node's ID and the hosts (IPs or names) it is
// reached at.
func (c *Cluster) NodeCertificate(nodeID string, hosts []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := serialNumber()
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: nodeID, Organization: []string{"fabric"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{nodeID},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.CA, &key.PublicKey, c.caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// APIToken is the bearer token of every agent's HTTP API in the cluster,
// derived from the gossip key, so that any agent accepts it and no second
// secret has to be handed around.
func (c *Cluster) APIToken() string {
	m := hmac.New(sha256.New, c.GossipKey)
	m.Write([]byte("fabric api token v1"))
	return "fat1_" + hex.EncodeToString(m.Sum(nil))[:40]
}

// Pool is a certificate pool holding only the cluster's CA.
func (c *Cluster) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.CA)
	return p
}

// TLSConfig is the mutual-TLS configuration of a node: it presents cert
// and accepts only peers whose certificate the cluster's CA signed, in
// both directions. Peers are checked against the CA, not a host name, so
// nodes may be dialled by any address.
func (c *Cluster) TLSConfig(cert tls.Certificate, nextProtos ...string) *tls.Config {
	pool := c.Pool()
	verify := func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
		if len(rawCerts) == 0 {
			return errors.New("secrets: the peer sent no certificate")
		}
		leaf, err := x509.ParseCertificate(rawCerts[0])
		if err != nil {
			return err
		}
		inter := x509.NewCertPool()
		for _, raw := range rawCerts[1:] {
			if ic, err := x509.ParseCertificate(raw); err == nil {
				inter.AddCert(ic)
			}
		}
		_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
		if err != nil {
			return fmt.Errorf("secrets: the peer's certificate is not from this cluster: %w", err)
		}
		return nil
	}
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{cert},
		ClientAuth:            tls.RequireAnyClientCert, // verified by VerifyPeerCertificate
		InsecureSkipVerify:    true,                     // host names are not checked; VerifyPeerCertificate checks the CA
		VerifyPeerCertificate: verify,
		NextProtos:            nextProtos,
	}
}
