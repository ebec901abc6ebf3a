// Package secrets holds a cluster's secrets and identities: the key that
// encrypts gossip, the certificate authority (CA) that signs every node's
// TLS certificate, each node's own certificate, and the join tokens that
// admit new nodes.
//
// The CA's private key stays on the servers. A new node makes its own key
// pair and sends a certificate request, authenticated by a one-time join
// token, to a server, which signs it; the node's certificate names the
// node, says whether it is a server, and expires, to be renewed. A node
// without a certificate signed by the CA can neither read the gossip nor
// complete a TLS handshake with a member.
package secrets

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Errors of the package.
var (
	// ErrBadToken means a join token or a secrets bundle could not be read.
	ErrBadToken = errors.New("secrets: malformed token")
	// ErrNotFound means the data directory holds no cluster secrets yet.
	ErrNotFound = errors.New("secrets: no cluster secrets in the data directory")
	// ErrNoCAKey means the node holds no CA key: it is not a server.
	ErrNoCAKey = errors.New("secrets: this node holds no CA key (it is not a server)")
	// ErrBadRequest means a certificate request was refused.
	ErrBadRequest = errors.New("secrets: bad certificate request")
)

// Prefixes of the encoded forms; the digit is the form's version.
const (
	bundlePrefix    = "fabric-secrets1."
	joinTokenPrefix = "fabric-join1."
)

// GossipKeySize is the length of the gossip key (AES-256).
const GossipKeySize = 32

// ServerUnit is the organizational unit of a server's certificate: a
// peer whose certificate names it holds the control state.
const ServerUnit = "server"

// JoinPrefix starts the name in a join token's certificate; a peer so
// named may only ask to join.
const JoinPrefix = "join:"

// Cluster is what every member shares: the gossip key and the CA's
// certificate; on a server, the CA's private key too.
type Cluster struct {
	GossipKey []byte
	CA        *x509.Certificate
	caDER     []byte
	caKey     *ecdsa.PrivateKey // nil on a node that is not a server
	pool      *x509.CertPool
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

// FromParts makes a member's secrets from the gossip key and the CA's
// certificate (DER), without the CA's key: what a node that is not a
// server holds.
func FromParts(gossipKey, caDER []byte) (*Cluster, error) { return fromParts(gossipKey, caDER, nil) }

func fromParts(key, caDER []byte, caKey *ecdsa.PrivateKey) (*Cluster, error) {
	if len(key) != GossipKeySize {
		return nil, fmt.Errorf("secrets: a gossip key of %d bytes, want %d", len(key), GossipKeySize)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	if !ca.IsCA {
		return nil, errors.New("secrets: the CA certificate is not a CA")
	}
	if caKey != nil {
		pub, ok := ca.PublicKey.(*ecdsa.PublicKey)
		if !ok || !pub.Equal(&caKey.PublicKey) {
			return nil, errors.New("secrets: the CA key does not match its certificate")
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &Cluster{GossipKey: slices.Clone(key), CA: ca, caDER: slices.Clone(caDER), caKey: caKey, pool: pool}, nil
}

// CanSign reports whether the node holds the CA's key (it is a server).
func (c *Cluster) CanSign() bool { return c.caKey != nil }

// CADER returns the CA's certificate, DER-encoded.
func (c *Cluster) CADER() []byte { return slices.Clone(c.caDER) }

// WithoutCAKey returns the secrets less the CA's key.
func (c *Cluster) WithoutCAKey() *Cluster {
	return &Cluster{GossipKey: c.GossipKey, CA: c.CA, caDER: c.caDER, pool: c.pool}
}

// SameCluster reports whether o has the same CA.
func (c *Cluster) SameCluster(o *Cluster) bool { return c.CA.Equal(o.CA) }

func serialNumber() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// Bundle encodes the secrets, the CA's key included when the node holds
// it, as one line: what a server hands a new server. Keep it as secret as
// the data directory.
func (c *Cluster) Bundle() string {
	var caKey []byte
	if c.caKey != nil {
		var err error
		if caKey, err = x509.MarshalECPrivateKey(c.caKey); err != nil {
			panic(err) // a P-256 key always marshals
		}
	}
	return bundlePrefix + base64.RawURLEncoding.EncodeToString(appendParts(nil, c.GossipKey, caKey, c.caDER))
}

func appendParts(b []byte, parts ...[]byte) []byte {
	for _, p := range parts {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return b
}

// readParts splits b into n length-prefixed parts, all of b.
func readParts(b []byte, n int) ([][]byte, error) {
	parts := make([][]byte, n)
	for i := range parts {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: truncated", ErrBadToken)
		}
		parts[i], b = b[k:k+int(l)], b[k+int(l):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d stray bytes", ErrBadToken, len(b))
	}
	return parts, nil
}

func decodeLine(s, prefix string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, prefix) {
		return nil, fmt.Errorf("%w: it does not start with %q", ErrBadToken, prefix)
	}
	b, err := base64.RawURLEncoding.DecodeString(s[len(prefix):])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	return b, nil
}

// ParseBundle reads a bundle made by Bundle.
func ParseBundle(s string) (*Cluster, error) {
	b, err := decodeLine(s, bundlePrefix)
	if err != nil {
		return nil, err
	}
	parts, err := readParts(b, 3)
	if err != nil {
		return nil, err
	}
	var caKey *ecdsa.PrivateKey
	if len(parts[1]) > 0 {
		if caKey, err = x509.ParseECPrivateKey(parts[1]); err != nil {
			return nil, fmt.Errorf("%w: CA key: %v", ErrBadToken, err)
		}
	}
	c, err := fromParts(parts[0], parts[2], caKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	return c, nil
}

// File names in a node's secrets directory.
const (
	gossipFile  = "gossip.key"
	extraFile   = "gossip-extra.keys" // keys of a rotation under way, a line each
	caFile      = "ca.pem"
	caKeyFile   = "ca-key.pem"
	nodeFile    = "node.pem"
	nodeKeyFile = "node-key.pem"
)

// Save writes the secrets into dir (created if missing), readable by the
// owner only. The CA's key is written only when the node holds it.
func (c *Cluster) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	files := map[string][]byte{
		gossipFile: []byte(base64.StdEncoding.EncodeToString(c.GossipKey) + "\n"),
		caFile:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.caDER}),
	}
	if c.caKey != nil {
		caKey, err := x509.MarshalECPrivateKey(c.caKey)
		if err != nil {
			return err
		}
		files[caKeyFile] = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: caKey})
	}
	for name, b := range files {
		if err := writeFile(filepath.Join(dir, name), b); err != nil {
			return err
		}
	}
	return nil
}

// writeFile replaces a file, readable by the owner only, atomically.
func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readPEM(dir, name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	p, _ := pem.Decode(b)
	if p == nil {
		return nil, fmt.Errorf("secrets: %s holds no PEM block", name)
	}
	return p.Bytes, nil
}

// SaveGossipKeys records the gossip keys after a step of a rotation: the
// one in use (which becomes GossipKey) and the others still taken.
func (c *Cluster) SaveGossipKeys(dir string, primary []byte, extra [][]byte) error {
	if len(primary) != GossipKeySize {
		return fmt.Errorf("secrets: a gossip key of %d bytes, want %d", len(primary), GossipKeySize)
	}
	var lines []string
	for _, k := range extra {
		if len(k) != GossipKeySize {
			return fmt.Errorf("secrets: a gossip key of %d bytes, want %d", len(k), GossipKeySize)
		}
		lines = append(lines, base64.StdEncoding.EncodeToString(k))
	}
	if err := writeFile(filepath.Join(dir, extraFile), []byte(strings.Join(lines, "\n")+"\n")); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, gossipFile), []byte(base64.StdEncoding.EncodeToString(primary)+"\n")); err != nil {
		return err
	}
	c.GossipKey = slices.Clone(primary)
	return nil
}

// ExtraGossipKeys reads the keys of a rotation under way saved in dir.
func ExtraGossipKeys(dir string) [][]byte {
	b, err := os.ReadFile(filepath.Join(dir, extraFile))
	if err != nil {
		return nil
	}
	var out [][]byte
	for _, l := range strings.Fields(string(b)) {
		if k, err := base64.StdEncoding.DecodeString(l); err == nil && len(k) == GossipKeySize {
			out = append(out, k)
		}
	}
	return out
}

// Load reads secrets saved by Save; ErrNotFound when there are none.
func Load(dir string) (*Cluster, error) {
	kb, err := os.ReadFile(filepath.Join(dir, gossipFile))
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
	caDER, err := readPEM(dir, caFile)
	if err != nil {
		return nil, err
	}
	var caKey *ecdsa.PrivateKey
	keyDER, err := readPEM(dir, caKeyFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if caKey, err = x509.ParseECPrivateKey(keyDER); err != nil {
			return nil, fmt.Errorf("secrets: %s: %w", caKeyFile, err)
		}
	}
	return fromParts(key, caDER, caKey)
}

// NewRequest makes a node's key pair and its certificate request, naming
// the node and the hosts (IPs or names) it is reached at.
func NewRequest(nodeID string, hosts []string) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: nodeID, Organization: []string{"fabric"}}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	return key, der, err
}

// MaxHosts bounds the hosts a certificate request may name.
const MaxHosts = 32

// Sign issues a node's certificate from its request: it names nodeID
// (which the request must name too) and the request's hosts, marks a
// server as one, and is valid for ttl from now.
func (c *Cluster) Sign(request []byte, nodeID string, server bool, ttl time.Duration, now time.Time) ([]byte, error) {
	if c.caKey == nil {
		return nil, ErrNoCAKey
	}
	req, err := x509.ParseCertificateRequest(request)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if _, ok := req.PublicKey.(*ecdsa.PublicKey); !ok {
		return nil, fmt.Errorf("%w: the key is not ECDSA", ErrBadRequest)
	}
	switch {
	case req.Subject.CommonName != nodeID:
		return nil, fmt.Errorf("%w: it names %q, not node %q", ErrBadRequest, req.Subject.CommonName, nodeID)
	case len(req.DNSNames)+len(req.IPAddresses) > MaxHosts:
		return nil, fmt.Errorf("%w: %d hosts, at most %d", ErrBadRequest, len(req.DNSNames)+len(req.IPAddresses), MaxHosts)
	case strings.HasPrefix(nodeID, JoinPrefix) || nodeID == "":
		return nil, fmt.Errorf("%w: node ID %q", ErrBadRequest, nodeID)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: nodeID, Organization: []string{"fabric"}},
		NotBefore:    now.Add(-min(time.Hour, ttl/10)), // clocks of other nodes may be behind
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     append([]string{nodeID}, req.DNSNames...),
		IPAddresses:  req.IPAddresses,
	}
	if server {
		tmpl.Subject.OrganizationalUnit = []string{ServerUnit}
	}
	return x509.CreateCertificate(rand.Reader, tmpl, c.CA, req.PublicKey, c.caKey)
}

// NodeCertificate issues a certificate for a node on a server: the key,
// the request and its signature at once.
func (c *Cluster) NodeCertificate(nodeID string, hosts []string, server bool, ttl time.Duration) (tls.Certificate, error) {
	key, req, err := NewRequest(nodeID, hosts)
	if err != nil {
		return tls.Certificate{}, err
	}
	der, err := c.Sign(req, nodeID, server, ttl, time.Now())
	if err != nil {
		return tls.Certificate{}, err
	}
	return Pair(der, key)
}

// Pair joins a certificate (DER) and its key.
func Pair(der []byte, key *ecdsa.PrivateKey) (tls.Certificate, error) {
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return tls.Certificate{}, errors.New("secrets: the certificate is not for this key")
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// IsServer reports whether a node's certificate makes it a server.
func IsServer(cert *x509.Certificate) bool {
	return slices.Contains(cert.Subject.OrganizationalUnit, ServerUnit)
}

// SaveNode writes a node's certificate and key into dir, readable by the
// owner only.
func SaveNode(dir string, cert tls.Certificate) error {
	key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return errors.New("secrets: the node's key is not ECDSA")
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, nodeKeyFile), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, nodeFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}))
}

// LoadNode reads a certificate saved by SaveNode; an error wrapping
// os.ErrNotExist when there is none.
func LoadNode(dir string) (tls.Certificate, error) {
	der, err := readPEM(dir, nodeFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	kder, err := readPEM(dir, nodeKeyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := x509.ParseECPrivateKey(kder)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("secrets: %s: %w", nodeKeyFile, err)
	}
	return Pair(der, key)
}

// JoinToken admits one node: a short-lived certificate named
// JoinPrefix+ID that the node shows a server once, the CA to check the
// server against, and addresses (QUIC) of servers to ask.
type JoinToken struct {
	ID      string
	Cert    tls.Certificate
	CA      *x509.Certificate
	Servers []string
}

// NewJoinToken makes a join token, valid until expires, and encodes it.
func (c *Cluster) NewJoinToken(id string, expires time.Time, servers []string) (string, error) {
	if c.caKey == nil {
		return "", ErrNoCAKey
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	serial, err := serialNumber()
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: JoinPrefix + id, Organization: []string{"fabric"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     expires,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.CA, &key.PublicKey, c.caKey)
	if err != nil {
		return "", err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", err
	}
	b := appendParts(nil, []byte(id), kb, der, c.caDER, []byte(strings.Join(servers, ",")))
	return joinTokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// ParseJoinToken reads a token made by NewJoinToken.
func ParseJoinToken(s string) (*JoinToken, error) {
	b, err := decodeLine(s, joinTokenPrefix)
	if err != nil {
		return nil, err
	}
	parts, err := readParts(b, 5)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParseECPrivateKey(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: key: %v", ErrBadToken, err)
	}
	cert, err := Pair(parts[2], key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	ca, err := x509.ParseCertificate(parts[3])
	if err != nil || !ca.IsCA {
		return nil, fmt.Errorf("%w: no CA certificate", ErrBadToken)
	}
	if cert.Leaf.Subject.CommonName != JoinPrefix+string(parts[0]) {
		return nil, fmt.Errorf("%w: its certificate names %q", ErrBadToken, cert.Leaf.Subject.CommonName)
	}
	if err := cert.Leaf.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("%w: its certificate is not from its CA", ErrBadToken)
	}
	t := &JoinToken{ID: string(parts[0]), Cert: cert, CA: ca}
	if len(parts[4]) > 0 {
		t.Servers = strings.Split(string(parts[4]), ",")
	}
	return t, nil
}

// Expires is when the token stops working.
func (t *JoinToken) Expires() time.Time { return t.Cert.Leaf.NotAfter }

// TLSConfig is the configuration a joining node dials a server with: it
// presents the token's certificate and trusts the token's CA.
func (t *JoinToken) TLSConfig(nextProtos ...string) *tls.Config {
	p := x509.NewCertPool()
	p.AddCert(t.CA)
	return tlsConfig(p, t.Cert, TLSOptions{}, nextProtos)
}

// Pool is a certificate pool holding only the cluster's CA (the same
// pool at each call: do not add to it).
func (c *Cluster) Pool() *x509.CertPool { return c.pool }

// TLSOptions add checks to a node's TLS configuration.
type TLSOptions struct {
	// Refuse, when set, is asked of every peer whose certificate the CA
	// signed, before the handshake completes: a non-nil error ends it (a
	// revoked node).
	Refuse func(cert *x509.Certificate) error
	// Current, when set, gives the certificate to present at each
	// handshake instead of the fixed one (a renewed certificate).
	Current func() *tls.Certificate
}

// TLSConfig is the mutual-TLS configuration of a node: it presents cert
// and accepts only peers whose certificate the cluster's CA signed, in
// both directions. Peers are checked against the CA, not a host name, so
// nodes may be dialled by any address.
func (c *Cluster) TLSConfig(cert tls.Certificate, o TLSOptions, nextProtos ...string) *tls.Config {
	return tlsConfig(c.Pool(), cert, o, nextProtos)
}

func tlsConfig(pool *x509.CertPool, cert tls.Certificate, o TLSOptions, nextProtos []string) *tls.Config {
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
		if o.Refuse != nil {
			return o.Refuse(leaf)
		}
		return nil
	}
	cfg := &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{cert},
		ClientAuth:            tls.RequireAnyClientCert, // verified by VerifyPeerCertificate
		InsecureSkipVerify:    true,                     // host names are not checked; VerifyPeerCertificate checks the CA
		VerifyPeerCertificate: verify,
		NextProtos:            nextProtos,
	}
	if o.Current != nil {
		cfg.Certificates = nil
		cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return o.Current(), nil }
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return o.Current(), nil }
	}
	return cfg
}

// A grant binds a job to its tenant, its root (the node that runs its
// driver) and its module's digest: a server signs it with the CA's key,
// and a node opens a share of the job, or serves the module, only with
// it, so that no member can run work in a tenant's name, or with a
// module, that the servers did not grant.
func grantDigest(job, tenant, root, module string) []byte {
	h := sha256.New()
	for _, s := range []string{"fabric job grant 2", job, tenant, root, module} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return h.Sum(nil)
}

// SignGrant signs a job's grant.
func (c *Cluster) SignGrant(job, tenant, root, module string) ([]byte, error) {
	if c.caKey == nil {
		return nil, ErrNoCAKey
	}
	return ecdsa.SignASN1(rand.Reader, c.caKey, grantDigest(job, tenant, root, module))
}

// ErrBadGrant means a job's grant is missing or not the servers'.
var ErrBadGrant = errors.New("secrets: the job's grant is not the servers'")

// VerifyGrant checks a job's grant against the CA's key.
func (c *Cluster) VerifyGrant(job, tenant, root, module string, grant []byte) error {
	pub, ok := c.CA.PublicKey.(*ecdsa.PublicKey)
	if !ok || len(grant) == 0 || !ecdsa.VerifyASN1(pub, grantDigest(job, tenant, root, module), grant) {
		return ErrBadGrant
	}
	return nil
}
