// Command testfn is a function for end-to-end tests. Its behaviour is chosen
// per request by the first word of the body:
//
//	echo ...        returns the body
//	call NAME ...   invokes function NAME through the node agent with the rest
//	sleep D ...     sleeps for duration D, then returns the body
//	crash           exits the process with status 3
//	env NAME        returns the value of environment variable NAME
//	fail            answers 500
//	reqid           returns the request id the platform gave this invocation
//	sum ...         returns "SIZE CRC" of the whole body (for large inputs)
//
// and, for references (package sdk's Put, Get, Map, ...), where READERS is
// a comma-separated list of function names (or *), READS the allowed reads
// and SIZE a byte count of deterministic bytes:
//
//	put READERS READS SIZE        sdk.Put; answers "REF SIZE CRC"
//	putreader READERS READS SIZE  sdk.PutReader, streamed; answers "REF SIZE CRC"
//	share READERS READS SIZE      sdk.NewBuffer, filled, then Share; answers "REF SIZE CRC"
//	get REF                       sdk.Get; answers "SIZE CRC"
//	map REF                       sdk.Map; answers "SIZE CRC"
//	open REF                      sdk.Open, read to EOF; answers "SIZE CRC"
//
// CRC is the CRC-32C of the bytes as 8 hex digits, computed here. A
// reference the node agent refuses is answered with status 422 and an error
// message that starts with the code ("ref_wrong_reader: ...").
//
// A request with the header X-Testfn-Headers: 1 is answered with the
// request's headers, one "Name: value" line each, sorted.
//
// With TESTFN_FAIL_START=1 it exits at start-up with a message, to test
// start failures.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/sdk"
)

func main() {
	if os.Getenv("TESTFN_FAIL_START") == "1" {
		fmt.Fprintln(os.Stderr, "testfn: refusing to start: TESTFN_FAIL_START=1")
		os.Exit(2)
	}
	fn := sdk.HandlerFunc(handle)
	sdk.ServeHTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Testfn-Headers") != "1" {
			fn.ServeHTTP(w, r)
			return
		}
		var lines []string
		for k, vs := range r.Header {
			for _, v := range vs {
				lines = append(lines, k+": "+v)
			}
		}
		sort.Strings(lines)
		fmt.Fprintln(w, strings.Join(lines, "\n"))
	}))
}

func handle(ctx context.Context, in []byte) ([]byte, error) {
	word, rest, _ := bytes.Cut(in, []byte(" "))
	switch string(word) {
	case "echo":
		return in, nil
	case "call":
		name, body, _ := bytes.Cut(rest, []byte(" "))
		return sdk.Invoke(ctx, string(name), body)
	case "sleep":
		ds, _, _ := bytes.Cut(rest, []byte(" "))
		d, err := time.ParseDuration(string(ds))
		if err != nil {
			return nil, sdk.Errorf(400, "sleep: %v", err)
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return in, nil
	case "crash":
		os.Exit(3)
	case "env":
		return []byte(os.Getenv(string(bytes.TrimSpace(rest)))), nil
	case "reqid":
		return []byte(sdk.RequestID(ctx)), nil
	case "sum":
		return []byte(describe(in)), nil
	case "fail":
		return nil, fmt.Errorf("testfn: failing as asked")
	case "put", "putreader", "share", "get", "map", "open":
		out, err := refAction(ctx, string(word), strings.Fields(string(rest)))
		var re *sdk.RefError
		if errors.As(err, &re) {
			return nil, sdk.Errorf(http.StatusUnprocessableEntity, "%s: %v", re.Code, err)
		}
		return out, err
	}
	return in, nil
}
