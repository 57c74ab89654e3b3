// Package pki makes the cluster's certificate authority and the
// certificates node agents (and the gateway) use to authenticate each other
// with mutual TLS.
//
// Node agents pull payload buffers from each other (reference passing). A
// holder must know that a pull comes from a member of its own cluster, and
// a puller must know it reached the holder it meant, not whoever answers on
// that address. Both sides therefore present a certificate issued by the
// cluster's CA, and both verify the other's.
//
// # Identity
//
// A member's identity is the URI in its certificate, "handoff://member/<name>"
// (see MemberURI), not a host name: node agents reach each other by IP
// address and port, and an address says nothing about who listens on it. So
// ClientConfig checks the peer's name itself, after the TLS handshake has
// verified the chain, and host names and IP addresses in certificates only
// serve clients that do their own hostname check (a browser, curl).
//
// # Trust
//
// Whoever holds the CA key can make members, and whoever holds a member's key
// can speak as that member: both files are written mode 0600 and refused when
// group or others may read them. The CA lives where `handoff up` keeps its
// state; each member's files are written next to it and handed to the member
// by path.
//
// A CA from another `handoff up` is a different cluster: its members are
// refused with ErrNotMember, even on the same machine.
//
// # Usage
//
// `handoff up` makes (or reloads) the CA and issues each node agent its
// files before starting it:
//
//	ca, err := pki.LoadOrCreateCA(filepath.Join(state, "pki"))
//	files, err := pki.WriteMember(filepath.Join(state, "pki"), "n1",
//		[]string{"127.0.0.1", "localhost"}, ca, 30*24*time.Hour)
//	// pass files (JSON: {"ca":..., "cert":..., "key":...}) to node agent n1
//
// The node agent loads them and serves and dials with them:
//
//	m, err := pki.Load(files)
//	ln, err := tls.Listen("tcp", addr, m.ServerConfig())
//	conn, err := tls.Dial("tcp", peerAddr, m.ClientConfig("n2")) // only n2 will do
//
// and asks a connection who is on the other end:
//
//	name, err := pki.PeerName(conn.ConnectionState())
package pki
