package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Sentinel errors for peers. Errors about a peer wrap one of them, so a
// node agent can tell "not ours" from "ours, but not the one I wanted"
// with errors.Is and show err.Error() to people.
var (
	// ErrNotMember means a certificate does not prove membership of this
	// cluster: it was not issued by this cluster's CA (another `handoff up`
	// made it), it has expired or is not yet valid, or it carries no member
	// identity (MemberURI). Load returns it for the member's own
	// certificate too.
	//
	// A server using ServerConfig refuses a client from another CA inside
	// crypto/tls, before this package sees the connection: the handshake
	// fails with a *tls.CertificateVerificationError instead.
	ErrNotMember = errors.New("pki: not a member of this cluster")

	// ErrWrongPeer means the peer is a member of this cluster, but not the
	// one the client asked for: the address now belongs to another node
	// agent, usually because the one expected restarted on another port.
	ErrWrongPeer = errors.New("pki: wrong cluster member")
)

// Member is a loaded cluster identity: a certificate issued by the cluster
// CA, its key and the CA it trusts. It is safe for concurrent use; the
// configs it returns are independent of each other.
type Member struct {
	Name     string    // the member name its certificate carries
	NotAfter time.Time // when its certificate expires; reissue before

	files Files
	cert  tls.Certificate
	roots *x509.CertPool
}

// Load reads a member's files and checks them: the key matches the
// certificate and is mode 0600, and the certificate chains to a CA in
// f.CA, is valid now, serves as TLS server and client and carries a member
// identity. Errors name the file at fault and say what to do.
func Load(f Files) (*Member, error) { return load(f, time.Now()) }

func load(f Files, now time.Time) (*Member, error) {
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("pki: cluster CA certificate: %w", err)
	}
	cas, err := parseCACerts(f.CA, caPEM)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	for _, c := range cas {
		roots.AddCert(c)
	}
	if err := checkKeyMode(f.Key); err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(f.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: member key: %w", err)
	}
	certPEM, err := os.ReadFile(f.Cert)
	if err != nil {
		return nil, fmt.Errorf("pki: member certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: %s and %s are not a certificate and its key (%v); issue them again (pki.WriteMember, which `handoff up` does on start)", f.Cert, f.Key, err)
	}
	var intermediates []*x509.Certificate
	for _, der := range pair.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("pki: %s: %w", f.Cert, err)
		}
		intermediates = append(intermediates, c)
	}
	leaf := pair.Leaf // set by X509KeyPair since Go 1.23
	if err := verifyChain(leaf, intermediates, roots, now, x509.ExtKeyUsageAny); err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrNotMember, f.Cert, describe(err, f.CA, now))
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if !slices.Contains(leaf.ExtKeyUsage, u) {
			return nil, fmt.Errorf("pki: %s may not serve as both TLS server and client; issue it with pki.CA.Issue", f.Cert)
		}
	}
	name, err := memberName(leaf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Cert, err)
	}
	return &Member{Name: name, NotAfter: leaf.NotAfter, files: f, cert: pair, roots: roots}, nil
}

// ServerConfig returns a TLS 1.3 server config that presents m's
// certificate and requires every client to present one issued by the
// cluster CA and carrying a member identity. Use PeerName on an accepted
// connection to learn which member it is.
func (m *Member) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{m.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    m.roots,
		// crypto/tls has verified the chain; what is left is the identity,
		// so a certificate the CA made for anything else is refused.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.VerifiedChains) == 0 {
				return fmt.Errorf("%w: the client's certificate was not verified; this config requires it", ErrNotMember)
			}
			_, err := memberName(cs.VerifiedChains[0][0])
			return err
		},
	}
}

// ClientConfig returns a TLS 1.3 client config that presents m's
// certificate and accepts a server only if its certificate was issued by
// the cluster CA and names member peer (any member when peer is "").
//
// The server's host name or IP address is not checked: members are found
// by address, and the address proves nothing, so the member identity is
// checked in its place. This works for any ServerName, including none.
func (m *Member) ClientConfig(peer string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{m.cert},
		RootCAs:      m.roots,
		// Turns off crypto/tls's own verification only, whose hostname
		// check cannot be separated from the chain check; VerifyConnection
		// does the chain check itself, on every handshake and resumption.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return m.verifyServer(cs, peer)
		},
	}
}

func (m *Member) verifyServer(cs tls.ConnectionState, peer string) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: the server presented no certificate", ErrNotMember)
	}
	leaf := cs.PeerCertificates[0]
	now := time.Now()
	if err := verifyChain(leaf, cs.PeerCertificates[1:], m.roots, now, x509.ExtKeyUsageServerAuth); err != nil {
		return fmt.Errorf("%w: the peer's %s", ErrNotMember, describe(err, m.files.CA, now))
	}
	name, err := memberName(leaf)
	if err != nil {
		return err
	}
	if peer != "" && name != peer {
		return fmt.Errorf("%w: expected member %q at this address, found %q; the address is stale (did %s restart elsewhere?): look it up again",
			ErrWrongPeer, peer, name, peer)
	}
	return nil
}

// PeerName returns the member name in the certificate of the other end of
// a connection, or an error wrapping ErrNotMember when it has none.
//
// PeerName does not verify the certificate again: it trusts the handshake,
// so use it only on connections made with ServerConfig or ClientConfig,
// which fail the handshake for anyone but a member. (A client verifies in
// VerifyConnection, which leaves cs.VerifiedChains empty, so PeerName falls
// back to cs.PeerCertificates.)
func PeerName(cs tls.ConnectionState) (string, error) {
	switch {
	case !cs.HandshakeComplete:
		return "", fmt.Errorf("%w: the TLS handshake has not completed, so the peer is not verified yet; call Handshake first", ErrNotMember)
	case len(cs.VerifiedChains) > 0:
		return memberName(cs.VerifiedChains[0][0])
	case len(cs.PeerCertificates) > 0:
		return memberName(cs.PeerCertificates[0])
	default:
		return "", fmt.Errorf("%w: the peer presented no certificate; serve with Member.ServerConfig and dial with Member.ClientConfig", ErrNotMember)
	}
}

// memberName returns the name in cert's member URI. Exactly one is
// required: two would make "who is this" ambiguous.
func memberName(cert *x509.Certificate) (string, error) {
	var names []string
	for _, u := range cert.URIs {
		if u.Scheme == memberScheme && u.Host == memberHost {
			name, _ := strings.CutPrefix(u.Path, "/")
			if !isName(name) || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
				return "", fmt.Errorf("%w: certificate %q carries a malformed member identity %q", ErrNotMember, cert.Subject.CommonName, u)
			}
			names = append(names, name)
		}
	}
	switch len(names) {
	case 1:
		return names[0], nil
	case 0:
		return "", fmt.Errorf("%w: certificate %q carries no member identity (%s); it was not issued for a cluster member: issue one with pki.CA.Issue",
			ErrNotMember, cert.Subject.CommonName, MemberURI("<name>"))
	default:
		return "", fmt.Errorf("%w: certificate %q carries %d member identities (%s); a member has exactly one",
			ErrNotMember, cert.Subject.CommonName, len(names), strings.Join(names, ", "))
	}
}

// verifyChain checks that leaf chains to roots at now for usage. It checks
// the validity period first, so that an expired certificate is reported as
// expired, not as some chain failure.
func verifyChain(leaf *x509.Certificate, intermediates []*x509.Certificate, roots *x509.CertPool, now time.Time, usage x509.ExtKeyUsage) error {
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return x509.CertificateInvalidError{Cert: leaf, Reason: x509.Expired}
	}
	pool := x509.NewCertPool()
	for _, c := range intermediates {
		pool.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: pool,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	return err
}

// describe turns a chain error into the end of a sentence that says what
// went wrong and what to do. caFile names the CA the certificate was
// checked against at now.
func describe(err error, caFile string, now time.Time) string {
	var invalid x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	switch {
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		c := invalid.Cert
		return fmt.Sprintf("certificate %q is valid only from %s to %s, not now (%s); if the clock is right, issue it again (`handoff up` does on start)",
			c.Subject.CommonName, c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case errors.As(err, &unknown):
		name := "?"
		if unknown.Cert != nil {
			name = unknown.Cert.Subject.CommonName
		}
		return fmt.Sprintf("certificate %q was not issued by this cluster's CA (%s); was it started by another `handoff up`?", name, caFile)
	default:
		return fmt.Sprintf("certificate does not verify against this cluster's CA (%s): %v", caFile, err)
	}
}
