// Command echo is a Handoff function that returns its input unchanged. Tests
// and benchmarks use it to measure the platform without the function's cost.
package main

import (
	"context"

	"github.com/handoff-dev/handoff/sdk"
)

func main() {
	sdk.Serve(func(ctx context.Context, in []byte) ([]byte, error) {
		return in, nil
	})
}
