package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newCA(t testing.TB) *CA {
	t.Helper()
	ca, err := LoadOrCreateCA(filepath.Join(t.TempDir(), "pki"))
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// newMember issues and loads name, with no hosts: members must not need
// them.
func newMember(t testing.TB, ca *CA, name string) *Member {
	t.Helper()
	f, err := WriteMember(t.TempDir(), name, nil, ca, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// writePair writes a certificate and key made outside Issue's rules next
// to ca's certificate and returns their paths.
func writePair(t *testing.T, ca *CA, certPEM, keyPEM []byte) Files {
	t.Helper()
	dir := t.TempDir()
	f := Files{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, "x.crt"), Key: filepath.Join(dir, "x.key")}
	for path, data := range map[string][]byte{f.CA: ca.certPEM, f.Cert: certPEM, f.Key: keyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// memberAt loads a member whose certificate is valid from notBefore to
// notAfter, loading it at a moment it was valid, as if it had been loaded
// then and kept running. ca must be valid at that moment too.
func memberAt(t *testing.T, ca *CA, name string, notBefore, notAfter time.Time) *Member {
	t.Helper()
	certPEM, keyPEM, err := ca.issue(name, nil, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	m, err := load(writePair(t, ca, certPEM, keyPEM), notBefore.Add(notAfter.Sub(notBefore)/2))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type outcome struct {
	server, client       tls.ConnectionState
	serverErr, clientErr error
}

// handshake runs one mutual-TLS connection over loopback TCP and reports
// each side's view. A side is accepted only if its peer then sends a byte:
// in TLS 1.3 the client finishes its handshake before the server has
// checked the client's certificate, so a refusal reaches the client on its
// first read.
func handshake(t *testing.T, srv, cli *tls.Config) outcome {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type side struct {
		cs  tls.ConnectionState
		err error
	}
	done := make(chan side, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- side{err: err}
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		err = tc.Handshake()
		if err == nil {
			_, err = tc.Write([]byte{1})
		}
		done <- side{tc.ConnectionState(), err}
	}()

	var out outcome
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), cli) // ServerName "127.0.0.1"
	if err == nil {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = io.ReadFull(c, make([]byte, 1))
		out.client = c.ConnectionState()
		c.Close()
	}
	out.clientErr = err
	s := <-done
	out.server, out.serverErr = s.cs, s.err
	return out
}

func TestLoadOrCreateCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "pki")
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, filepath.Join(dir, CAKeyFile): 0o600} {
		if st, err := os.Stat(path); err != nil || st.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", path, st.Mode(), err, want)
		}
	}
	c := ca.cert
	if !strings.HasPrefix(c.Subject.CommonName, "handoff cluster CA ") || len(c.Subject.CommonName) <= len("handoff cluster CA ") {
		t.Errorf("CN %q, want a random suffix", c.Subject.CommonName)
	}
	if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("IsCA %v, key usage %v: not a CA", c.IsCA, c.KeyUsage)
	}
	if life := c.NotAfter.Sub(c.NotBefore); life < CAValidity || life > CAValidity+2*time.Minute {
		t.Errorf("valid for %v, want %v", life, CAValidity)
	}
	if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("public key %T, want ECDSA", c.PublicKey)
	}

	again, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.CertPEM(), ca.CertPEM()) || !publicKeyEqual(again.key.Public(), ca.key.Public()) {
		t.Fatal("second LoadOrCreateCA made a new CA instead of loading the first")
	}
	// Members issued before a restart still verify under the reloaded CA.
	certPEM, _, err := again.Issue("n1", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	leaf, _ := x509.ParseCertificate(block.Bytes)
	if err := leaf.CheckSignatureFrom(ca.cert); err != nil {
		t.Fatal(err)
	}
}

func TestLoadOrCreateCARefuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if _, err := LoadOrCreateCA(dir); err != nil {
		t.Fatal(err)
	}
	keyPath, certPath := filepath.Join(dir, CAKeyFile), filepath.Join(dir, CACertFile)

	t.Run("world-readable key", func(t *testing.T) {
		if err := os.Chmod(keyPath, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(keyPath, 0o600)
		_, err := LoadOrCreateCA(dir)
		if err == nil || !strings.Contains(err.Error(), "chmod 600 "+keyPath) {
			t.Fatalf("err = %v, want a refusal telling to chmod 600 %s", err, keyPath)
		}
	})
	t.Run("group-readable key", func(t *testing.T) {
		if err := os.Chmod(keyPath, 0o640); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(keyPath, 0o600)
		if _, err := LoadOrCreateCA(dir); err == nil {
			t.Fatal("a group-readable CA key was accepted")
		}
	})
	t.Run("key of another CA", func(t *testing.T) {
		other := newCA(t)
		keyPEM, _ := os.ReadFile(filepath.Join(other.dir, CAKeyFile))
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, CACertFile), mustRead(t, certPath), 0o644)
		os.WriteFile(filepath.Join(d, CAKeyFile), keyPEM, 0o600)
		_, err := LoadOrCreateCA(d)
		if err == nil || !strings.Contains(err.Error(), "do not belong together") {
			t.Fatalf("err = %v, want a mismatched pair refused", err)
		}
	})
	t.Run("certificate without key", func(t *testing.T) {
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, CACertFile), mustRead(t, certPath), 0o644)
		_, err := LoadOrCreateCA(d)
		if err == nil || !strings.Contains(err.Error(), "restore the key") {
			t.Fatalf("err = %v, want a refusal to replace a lone certificate", err)
		}
		if _, err := os.Stat(filepath.Join(d, CAKeyFile)); err == nil {
			t.Fatal("a key was made for an existing certificate")
		}
	})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestIssue(t *testing.T) {
	ca := newCA(t)
	before := time.Now()
	certPEM, keyPEM, err := ca.Issue("n2", []string{"127.0.0.1", "localhost", "10.0.0.2", "::1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c := pair.Leaf
	if c.Subject.CommonName != "n2" || len(c.URIs) != 1 || c.URIs[0].String() != "handoff://member/n2" {
		t.Errorf("CN %q, URIs %v; want n2 and handoff://member/n2", c.Subject.CommonName, c.URIs)
	}
	if len(c.IPAddresses) != 3 || len(c.DNSNames) != 1 || c.DNSNames[0] != "localhost" {
		t.Errorf("IPs %v, DNS names %v", c.IPAddresses, c.DNSNames)
	}
	if len(c.ExtKeyUsage) != 2 || c.IsCA {
		t.Errorf("ext key usage %v, IsCA %v; want server and client auth, not a CA", c.ExtKeyUsage, c.IsCA)
	}
	if d := before.Sub(c.NotBefore); d < 59*time.Second || d > 62*time.Second {
		t.Errorf("NotBefore %v before issue, want about a minute", d)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v, want positive and at most 128 bits", c.SerialNumber)
	}
	if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("public key %T, want ECDSA", c.PublicKey)
	}
	if c.NotAfter.After(ca.cert.NotAfter) {
		t.Error("leaf outlives the CA")
	}
	if name, err := memberName(c); err != nil || name != "n2" {
		t.Errorf("memberName = %q, %v", name, err)
	}

	for _, bad := range []struct {
		name  string
		hosts []string
		ttl   time.Duration
	}{
		{"", nil, time.Hour},
		{"N1", nil, time.Hour},
		{"n1/../ca", nil, time.Hour},
		{"n1", []string{"127.0.0.1:8080"}, time.Hour},
		{"n1", []string{"https://x"}, time.Hour},
		{"n1", nil, 0},
	} {
		if _, _, err := ca.Issue(bad.name, bad.hosts, bad.ttl); err == nil {
			t.Errorf("Issue(%q, %q, %v) succeeded", bad.name, bad.hosts, bad.ttl)
		}
	}
}

func TestWriteMember(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	f, err := WriteMember(dir, "n1", []string{"127.0.0.1"}, ca, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := Files{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, "n1.crt"), Key: filepath.Join(dir, "n1.key")}
	if f != want {
		t.Errorf("files %+v, want %+v", f, want)
	}
	if st, err := os.Stat(f.Key); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v (%v), want 0600", st.Mode(), err)
	}
	if !bytes.Equal(mustRead(t, f.CA), ca.CertPEM()) {
		t.Error("ca.crt is not the CA certificate")
	}
	js, _ := json.Marshal(f)
	if want := `{"ca":"` + f.CA + `","cert":"` + f.Cert + `","key":"` + f.Key + `"}`; string(js) != want {
		t.Errorf("JSON %s, want %s", js, want)
	}
	m, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "n1" {
		t.Errorf("name %q", m.Name)
	}
	// In the CA's own directory, the name "ca" would overwrite the CA key.
	if _, err := WriteMember(ca.dir, "ca", nil, ca, time.Hour); err == nil {
		t.Fatal("member name \"ca\" accepted")
	}
	if _, err := LoadOrCreateCA(ca.dir); err != nil {
		t.Fatal(err)
	}
}

func TestMutualTLS(t *testing.T) {
	ca := newCA(t)
	n1, n2 := newMember(t, ca, "n1"), newMember(t, ca, "n2")
	for _, peer := range []string{"n2", ""} {
		out := handshake(t, n2.ServerConfig(), n1.ClientConfig(peer))
		if out.serverErr != nil || out.clientErr != nil {
			t.Fatalf("ClientConfig(%q): server %v, client %v", peer, out.serverErr, out.clientErr)
		}
		if name, err := PeerName(out.server); err != nil || name != "n1" {
			t.Errorf("server sees %q, %v; want n1", name, err)
		}
		if name, err := PeerName(out.client); err != nil || name != "n2" {
			t.Errorf("client sees %q, %v; want n2", name, err)
		}
		if out.client.Version != tls.VersionTLS13 {
			t.Errorf("version %x, want TLS 1.3", out.client.Version)
		}
	}
}

func TestClientWithoutCertificateRefused(t *testing.T) {
	ca := newCA(t)
	n1, n2 := newMember(t, ca, "n1"), newMember(t, ca, "n2")
	cli := n1.ClientConfig("n2")
	cli.Certificates = nil
	out := handshake(t, n2.ServerConfig(), cli)
	if out.serverErr == nil || !strings.Contains(out.serverErr.Error(), "didn't provide a certificate") || out.clientErr == nil {
		t.Fatalf("server %v, client %v; want the server to refuse a client without certificate", out.serverErr, out.clientErr)
	}
	if _, err := PeerName(tls.ConnectionState{HandshakeComplete: true}); !errors.Is(err, ErrNotMember) {
		t.Errorf("PeerName without certificate: %v, want ErrNotMember", err)
	}
}

func TestOtherClusterRefused(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	n1 := newMember(t, ca, "n1")
	stranger := newMember(t, other, "n2") // same name, other cluster

	t.Run("as server", func(t *testing.T) {
		out := handshake(t, stranger.ServerConfig(), n1.ClientConfig("n2"))
		if !errors.Is(out.clientErr, ErrNotMember) {
			t.Fatalf("client: %v, want ErrNotMember", out.clientErr)
		}
		if !strings.Contains(out.clientErr.Error(), "another `handoff up`") {
			t.Errorf("client error does not say what to check: %v", out.clientErr)
		}
		if out.serverErr == nil {
			t.Error("server completed the connection")
		}
	})
	t.Run("as client", func(t *testing.T) {
		cli := stranger.ClientConfig("")
		// Send the certificate even though the server names CAs it does
		// not come from, so the server's verification is what refuses it.
		cli.Certificates = nil
		cli.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &stranger.cert, nil
		}
		cli.VerifyConnection = nil // let it reach the server's check
		out := handshake(t, n1.ServerConfig(), cli)
		var unknown x509.UnknownAuthorityError
		if !errors.As(out.serverErr, &unknown) {
			t.Fatalf("server: %v, want an unknown authority", out.serverErr)
		}
		if out.clientErr == nil {
			t.Error("client was accepted")
		}
	})
}

func TestWrongPeer(t *testing.T) {
	ca := newCA(t)
	n1, n3 := newMember(t, ca, "n1"), newMember(t, ca, "n3")
	out := handshake(t, n3.ServerConfig(), n1.ClientConfig("n2"))
	if !errors.Is(out.clientErr, ErrWrongPeer) {
		t.Fatalf("client: %v, want ErrWrongPeer", out.clientErr)
	}
	if errors.Is(out.clientErr, ErrNotMember) {
		t.Error("a wrong peer of this cluster reported as not a member")
	}
}

func TestExpiredRefused(t *testing.T) {
	now := time.Now()
	// A CA made yesterday, so that members valid an hour ago chain to it.
	ca, err := createCA(t.TempDir(), now.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	n1 := newMember(t, ca, "n1")
	old := memberAt(t, ca, "n2", now.Add(-2*time.Hour), now.Add(-time.Hour))
	future := memberAt(t, ca, "n3", now.Add(time.Hour), now.Add(2*time.Hour))

	for _, m := range []*Member{old, future} {
		out := handshake(t, m.ServerConfig(), n1.ClientConfig(""))
		if !errors.Is(out.clientErr, ErrNotMember) || !strings.Contains(out.clientErr.Error(), "not now") {
			t.Errorf("%s as server: client %v, want ErrNotMember saying it is not valid now", m.Name, out.clientErr)
		}
		out = handshake(t, n1.ServerConfig(), m.ClientConfig(""))
		if out.serverErr == nil || out.clientErr == nil {
			t.Errorf("%s as client: server %v, client %v; want both to fail", m.Name, out.serverErr, out.clientErr)
		}
	}

	// A tiny ttl through the public API: expired by the time it loads.
	certPEM, keyPEM, err := ca.Issue("n4", nil, time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	f := writePair(t, ca, certPEM, keyPEM)
	_, err = load(f, now.Add(time.Second))
	if !errors.Is(err, ErrNotMember) || !strings.Contains(err.Error(), f.Cert) {
		t.Fatalf("Load of an expired certificate: %v, want ErrNotMember naming %s", err, f.Cert)
	}
}

func TestLoadRefuses(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	mine, err := WriteMember(t.TempDir(), "n1", nil, ca, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := WriteMember(t.TempDir(), "n1", nil, other, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("certificate from another CA", func(t *testing.T) {
		_, err := Load(Files{CA: mine.CA, Cert: theirs.Cert, Key: theirs.Key})
		if !errors.Is(err, ErrNotMember) || !strings.Contains(err.Error(), theirs.Cert) || !strings.Contains(err.Error(), mine.CA) {
			t.Fatalf("err = %v, want ErrNotMember naming %s and %s", err, theirs.Cert, mine.CA)
		}
	})
	t.Run("key of another certificate", func(t *testing.T) {
		_, err := Load(Files{CA: mine.CA, Cert: mine.Cert, Key: theirs.Key})
		if err == nil || !strings.Contains(err.Error(), mine.Cert) || !strings.Contains(err.Error(), theirs.Key) {
			t.Fatalf("err = %v, want a mismatch naming both files", err)
		}
	})
	t.Run("readable key", func(t *testing.T) {
		os.Chmod(mine.Key, 0o644)
		defer os.Chmod(mine.Key, 0o600)
		if _, err := Load(mine); err == nil || !strings.Contains(err.Error(), mine.Key) {
			t.Fatalf("err = %v, want a refusal naming %s", err, mine.Key)
		}
	})
	t.Run("key as CA", func(t *testing.T) {
		if _, err := Load(Files{CA: mine.Key, Cert: mine.Cert, Key: mine.Key}); err == nil || !strings.Contains(err.Error(), "never to a key") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "n1.crt")
		if _, err := Load(Files{CA: mine.CA, Cert: missing, Key: mine.Key}); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestNoMemberIdentityRefused covers a certificate the cluster CA signed
// for something other than a member: the chain verifies, the identity
// does not, on both sides.
func TestNoMemberIdentityRefused(t *testing.T) {
	ca := newCA(t)
	n1 := newMember(t, ca, "n1")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := randomSerial()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "n2"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := encodeKey(key)
	f := writePair(t, ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM)
	if _, err := Load(f); !errors.Is(err, ErrNotMember) {
		t.Fatalf("Load: %v, want ErrNotMember", err)
	}
	pair, err := tls.X509KeyPair(mustRead(t, f.Cert), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	// Build the configs by hand, as Load refuses this certificate.
	anon := &Member{files: f, cert: pair, roots: n1.roots}

	out := handshake(t, anon.ServerConfig(), n1.ClientConfig(""))
	if !errors.Is(out.clientErr, ErrNotMember) {
		t.Errorf("as server: client %v, want ErrNotMember", out.clientErr)
	}
	out = handshake(t, n1.ServerConfig(), anon.ClientConfig(""))
	if !errors.Is(out.serverErr, ErrNotMember) || out.clientErr == nil {
		t.Errorf("as client: server %v, client %v; want ErrNotMember and a refusal", out.serverErr, out.clientErr)
	}
}
