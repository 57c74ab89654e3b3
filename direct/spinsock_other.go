//go:build !linux

package direct

import (
	"errors"
	"net"
)

// spinSock is Linux only; elsewhere a spinning TCPConn stays in the
// netpoller (see spinsock_linux.go).
type spinSock struct{}

var errWoken = errors.New("direct: woken")

func detach(net.Conn) (*spinSock, error)                    { return nil, nil }
func (*spinSock) read(p []byte, _ func() bool) (int, error) { return 0, net.ErrClosed }
func (*spinSock) write(p []byte) (int, error)               { return 0, net.ErrClosed }
func (*spinSock) wake()                                     {}
func (*spinSock) close() error                              { return nil }
