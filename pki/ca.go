package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names LoadOrCreateCA and WriteMember use inside their directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// CAValidity is how long a new CA is valid. Long, because replacing it means
// reissuing every member; short enough that a forgotten copy of the key
// stops mattering one day.
const CAValidity = 10 * 365 * 24 * time.Hour

// clockSkew backdates every certificate, so a member whose clock runs a
// little behind the issuer's accepts a certificate issued just now.
const clockSkew = time.Minute

// CA is the cluster's certificate authority: its self-signed certificate
// and private key. It is safe for concurrent use.
type CA struct {
	dir     string // where it was loaded from, for error messages
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
}

// LoadOrCreateCA loads the CA kept in dir (CACertFile, CAKeyFile), or
// creates one there when neither file exists: an ECDSA P-256 key, written
// mode 0600 in a directory made mode 0700, and a self-signed certificate
// valid for CAValidity. It refuses a key that group or others may access,
// a certificate and key that do not belong together, an expired CA, and a
// directory holding only one of the two files.
//
// Two processes creating a CA in the same directory at the same moment may
// leave a mismatched pair, which the next load refuses; `handoff up` holds
// its state directory alone.
func LoadOrCreateCA(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: CA directory: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certErr, keyErr := exists(certPath), exists(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		return loadCA(dir, time.Now())
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return createCA(dir, time.Now())
	case certErr != nil && !errors.Is(certErr, fs.ErrNotExist):
		return nil, fmt.Errorf("pki: CA certificate: %w", certErr)
	case keyErr != nil && !errors.Is(keyErr, fs.ErrNotExist):
		return nil, fmt.Errorf("pki: CA key: %w", keyErr)
	case certErr == nil:
		// Making a new key would orphan every member issued under the
		// certificate; the user decides.
		return nil, fmt.Errorf("pki: %s exists but %s does not; restore the key, or remove %s to create a new CA (every member is then reissued)",
			certPath, keyPath, certPath)
	default:
		return nil, fmt.Errorf("pki: %s exists but %s does not (an earlier run was interrupted?); restore the certificate, or remove %s to create a new CA",
			keyPath, certPath, keyPath)
	}
}

func exists(path string) error {
	_, err := os.Stat(path)
	return err
}

func createCA(dir string, now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	// The random suffix gives every cluster's CA its own subject. Chain
	// building looks parents up by subject, and a person reading
	// "unknown authority" can tell two clusters apart.
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "handoff cluster CA " + hex.EncodeToString(suffix)},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true, // it signs members only, never another CA
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parse new CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// Key first: a crash in between leaves a key without a certificate,
	// which LoadOrCreateCA reports instead of silently replacing.
	if err := writeFile(filepath.Join(dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, CACertFile), certPEM, 0o644); err != nil {
		return nil, err
	}
	return &CA{dir: dir, cert: cert, certPEM: certPEM, key: key}, nil
}

func loadCA(dir string, now time.Time) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	key, err := readKey(keyPath)
	if err != nil {
		return nil, err
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	certs, err := parseCACerts(certPath, certPEM)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("pki: %s holds %d certificates; the CA directory keeps exactly one, the one matching %s", certPath, len(certs), keyPath)
	}
	cert := certs[0]
	if !publicKeyEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("pki: %s and %s do not belong together (the key does not match the certificate); restore the pair, or move both aside to create a new CA", certPath, keyPath)
	}
	if now.After(cert.NotAfter) {
		return nil, fmt.Errorf("pki: the CA in %s expired at %s; move %s aside and run `handoff up` again to create a new CA (every member is reissued)",
			certPath, cert.NotAfter.UTC().Format(time.RFC3339), dir)
	}
	return &CA{dir: dir, cert: cert, certPEM: certPEM, key: key}, nil
}

// CertPEM returns the CA certificate, PEM-encoded: what members trust.
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.certPEM...) }

// MemberURI returns the identity a member's certificate carries,
// "handoff://member/<name>".
func MemberURI(name string) string { return memberScheme + "://" + memberHost + "/" + name }

const (
	memberScheme = "handoff"
	memberHost   = "member"
)

// Issue makes a certificate and key for the member name, valid from now
// (less a minute of clock skew) for ttl, or until the CA expires if that
// comes first. name is 1–63 of a-z, 0-9 and '-' (a node id or "gateway");
// the certificate carries it as MemberURI(name), the identity peers check.
// hosts become IP address and DNS name entries, for clients that check host
// names; members do not need them. The certificate serves as both TLS
// server and client. Both results are PEM; the key is PKCS #8.
func (ca *CA) Issue(name string, hosts []string, ttl time.Duration) (certPEM, keyPEM []byte, err error) {
	if ttl <= 0 {
		return nil, nil, fmt.Errorf("pki: member %q: ttl %v is not positive; give how long the certificate stays valid", name, ttl)
	}
	now := time.Now()
	return ca.issue(name, hosts, now.Add(-clockSkew), now.Add(ttl))
}

// issue is Issue with explicit validity, so tests can make certificates
// that are expired or not yet valid.
func (ca *CA) issue(name string, hosts []string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	if !isName(name) {
		return nil, nil, fmt.Errorf("pki: member name %q is not valid; use 1–63 of a-z, 0-9 and '-' (a node id)", name)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		URIs:                  []*url.URL{{Scheme: memberScheme, Host: memberHost, Path: "/" + name}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		// A chain is only valid while every certificate in it is.
		tmpl.NotAfter = ca.cert.NotAfter
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if isDNSName(h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		} else {
			return nil, nil, fmt.Errorf("pki: member %q: host %q is neither an IP address nor a DNS name; give hosts without ports or schemes", name, h)
		}
	}
	if tmpl.SerialNumber, err = randomSerial(); err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate key for %q: %w", name, err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: issue certificate for %q: %w", name, err)
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// Files are the paths of a member's TLS files. They travel in node
// configuration, hence the JSON tags.
type Files struct {
	CA   string `json:"ca"`   // the cluster CA certificate (PEM)
	Cert string `json:"cert"` // the member's certificate (PEM)
	Key  string `json:"key"`  // the member's private key (PEM, mode 0600)
}

// WriteMember issues name a certificate (see CA.Issue) and writes it to
// dir as <name>.crt and <name>.key (mode 0600), with the CA certificate as
// CACertFile, replacing earlier files atomically so a member restarting
// meanwhile reads either the old set or the new one. It returns the
// absolute paths. dir may be the CA's own directory.
func WriteMember(dir, name string, hosts []string, ca *CA, ttl time.Duration) (Files, error) {
	if name == strings.TrimSuffix(CACertFile, ".crt") {
		return Files{}, fmt.Errorf("pki: member name %q is reserved: its files would replace the CA's; choose another name", name)
	}
	certPEM, keyPEM, err := ca.Issue(name, hosts, ttl)
	if err != nil {
		return Files{}, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Files{}, fmt.Errorf("pki: member directory: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return Files{}, fmt.Errorf("pki: member directory: %w", err)
	}
	f := Files{
		CA:   filepath.Join(abs, CACertFile),
		Cert: filepath.Join(abs, name+".crt"),
		Key:  filepath.Join(abs, name+".key"),
	}
	// Key before certificate: a member that loads in between fails on a
	// mismatched pair and is restarted, rather than running with the old
	// certificate and a key nobody has.
	for _, w := range []struct {
		path string
		data []byte
		mode fs.FileMode
	}{{f.CA, ca.certPEM, 0o644}, {f.Key, keyPEM, 0o600}, {f.Cert, certPEM, 0o644}} {
		if err := writeFile(w.path, w.data, w.mode); err != nil {
			return Files{}, err
		}
	}
	return f, nil
}

// writeFile replaces path with data atomically (temporary file, fsync,
// rename), so a reader never sees a half-written key or certificate.
func writeFile(path string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*") // created mode 0600
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	return nil
}

// readKey reads a PEM private key, refusing a file that group or others
// may access: such a key may already have leaked.
func readKey(path string) (crypto.Signer, error) {
	if err := checkKeyMode(path); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("pki: %s holds no PEM block; it should be a private key written by `handoff up`", path)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("pki: %s holds a %q, not a private key", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: %s: key type %T cannot sign", path, key)
	}
	return signer, nil
}

func checkKeyMode(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("pki: private key %s is accessible by group or others (mode %04o); run `chmod 600 %s`, and if others could have copied it, make new keys",
			path, perm, path)
	}
	return nil
}

// parseCACerts parses every certificate in a CA file and checks that each
// is a CA. More than one is allowed in a member's CA file so that a cluster
// can trust an old and a new CA while it moves from one to the other.
func parseCACerts(path string, data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("pki: %s holds a %q, not only certificates; point to the CA certificate (%s), never to a key", path, block.Type, CACertFile)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: %s: %w", path, err)
		}
		if !cert.IsCA || !cert.BasicConstraintsValid {
			return nil, fmt.Errorf("pki: %s holds %q, which is not a CA certificate; point to the cluster's %s", path, cert.Subject.CommonName, CACertFile)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("pki: %s holds no PEM certificate; point to the cluster's %s", path, CACertFile)
	}
	return certs, nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// randomSerial returns a random positive 128-bit serial number. Random,
// not counted, so two CAs (or one recreated) never reuse a serial, and
// nothing has to be stored between issues.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	n, err := rand.Int(rand.Reader, limit.Sub(limit, big.NewInt(1)))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil // 1 … 2^128-1: RFC 5280 forbids 0
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// isName reports whether s is a member name: 1–63 of a-z, 0-9 and '-', as
// ref accepts node ids. It keeps the member URI free of escaping.
func isName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// isDNSName is a loose check that catches the usual mistakes (a port, a
// scheme, a space); the TLS library does the strict one when it matters.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '*' || c == '_') {
			return false
		}
	}
	return true
}
