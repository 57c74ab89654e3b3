// Command seqfile writes or reads one file sequentially in 1 MiB chunks
// (package bench/seqio) and prints its seqio.Tally as JSON: the instance
// side of `handoff bench store`'s mounted-volume series, a process apart
// from the one serving the mount.
//
//	seqfile write PATH BYTES
//	seqfile read PATH
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/handoff-dev/handoff/bench/seqio"
)

func main() {
	t, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "seqfile:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(t)
}

func run(args []string) (seqio.Tally, error) {
	switch {
	case len(args) == 3 && args[0] == "write":
		n, err := strconv.ParseInt(args[2], 10, 64)
		if err != nil {
			return seqio.Tally{}, fmt.Errorf("bytes: %w", err)
		}
		return seqio.WriteFile(args[1], n)
	case len(args) == 2 && args[0] == "read":
		return seqio.ReadFile(args[1])
	}
	return seqio.Tally{}, fmt.Errorf("usage: seqfile write PATH BYTES | seqfile read PATH")
}
