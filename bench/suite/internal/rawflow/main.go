// Command rawflow is the raw baseline of `handoff bench pipeline`'s stream
// series: two processes of it move a stream with the loops of package
// bench/flow and no protocol at all.
//
//	rawflow send BYTES        write BYTES bytes to standard output (a pipe)
//	rawflow send BYTES ADDR   write them to a TCP connection to ADDR
//	rawflow recv              read standard input to its end
//	rawflow recv tcp          listen on 127.0.0.1, print the address on a
//	                          line, take one connection and read it to its end
//
// The receiver prints its flow.Tally as JSON on standard output.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"

	"github.com/handoff-dev/handoff/bench/flow"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "rawflow:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	switch {
	case len(args) >= 2 && len(args) <= 3 && args[0] == "send":
		n, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil {
			return err
		}
		var w io.Writer = os.Stdout
		if len(args) == 3 {
			c, err := net.Dial("tcp", args[2])
			if err != nil {
				return err
			}
			defer c.Close()
			w = c
		}
		return flow.Produce(w, n)
	case len(args) == 1 && args[0] == "recv":
		return report(flow.Discard(os.Stdin))
	case len(args) == 2 && args[0] == "recv" && args[1] == "tcp":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		out := bufio.NewWriter(os.Stdout)
		fmt.Fprintln(out, ln.Addr())
		if err := out.Flush(); err != nil {
			return err
		}
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			return err
		}
		defer c.Close()
		return report(flow.Discard(c))
	}
	return fmt.Errorf("usage: rawflow send BYTES [ADDR] | recv [tcp]")
}

func report(t flow.Tally, err error) error {
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(t)
}
