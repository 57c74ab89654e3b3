package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/handoff-dev/handoff/sdk"
)

// A function that upper-cases its input.
func ExampleServe() {
	sdk.Serve(func(ctx context.Context, in []byte) ([]byte, error) {
		if len(in) == 0 {
			return nil, sdk.Errorf(http.StatusBadRequest, "empty input: send some text")
		}
		return []byte(strings.ToUpper(string(in))), nil
	})
}

// A function that calls another one and maps its failure.
func ExampleInvoke() {
	sdk.Serve(func(ctx context.Context, in []byte) ([]byte, error) {
		out, err := sdk.Invoke(ctx, "wc-count", in) // carries sdk.RequestID(ctx)
		var e *sdk.Error
		if errors.As(err, &e) && e.Status == http.StatusNotFound {
			return nil, sdk.Errorf(http.StatusServiceUnavailable, "wc-count is not deployed: %s", e.Message)
		}
		if err != nil {
			return nil, fmt.Errorf("counting: %w", err)
		}
		return out, nil
	})
}
