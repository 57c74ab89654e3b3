//go:build linux

// Command leasecaller is the client process of `handoff bench invoke`'s
// lease series: it reads one job (JSON) on stdin, measures it, and writes
// the result (JSON) on stdout; see package leasecall.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/handoff-dev/handoff/bench/suite/internal/leasecall"
)

func main() {
	if err := leasecall.Main(context.Background(), os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "leasecaller:", err)
		os.Exit(1)
	}
}
