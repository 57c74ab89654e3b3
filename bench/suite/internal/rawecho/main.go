//go:build linux

// Command rawecho is the peer of the raw baselines of `handoff bench
// invoke`: a process that echoes, with no protocol, either messages on a
// shared-memory ring handed to it as fd 3 (`rawecho ring`, both sides
// polling hot) or 64-byte blocks on one loopback TCP connection to the
// port it prints (`rawecho tcp`). The baselines then cross two processes,
// like the direct calls they are held against. It exits when its parent
// does or closes its end.
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/handoff-dev/handoff/direct/shm"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: rawecho ring|tcp")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "ring":
		err = ring()
	case "tcp":
		err = tcp()
	default:
		err = fmt.Errorf("no mode %q: want ring or tcp", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rawecho:", err)
		os.Exit(1)
	}
}

func ring() error {
	parent, err := shm.WatchProcess(os.Getppid())
	if err != nil {
		return err
	}
	defer parent.Close()
	c, err := shm.Open(os.NewFile(3, "ring"), shm.Executor, shm.Options{Mode: shm.Hot, Alive: parent.Alive})
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		msg, err := c.Recv()
		if err != nil {
			return quiet(err)
		}
		if err := c.Send(msg); err != nil {
			return quiet(err)
		}
	}
}

func tcp() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	c, err := ln.Accept()
	ln.Close()
	if err != nil {
		return err
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	var buf [64]byte
	for {
		if _, err := io.ReadFull(c, buf[:]); err != nil {
			return quiet(err)
		}
		if _, err := c.Write(buf[:]); err != nil {
			return quiet(err)
		}
	}
}

// quiet turns the ways a peer ends the conversation into a clean exit.
func quiet(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, shm.ErrPeerClosed) || errors.Is(err, shm.ErrPeerGone) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
