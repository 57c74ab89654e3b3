// Command count is the wc-count function of the wordcount example: it counts
// the words of a chunk of text, given inline or as an S3 key. The logic is in
// package wcfn; the JSON formats are in package wc.
package main

import (
	"github.com/handoff-dev/handoff/examples/wordcount/wcfn"
	"github.com/handoff-dev/handoff/sdk"
)

func main() {
	sdk.Serve(wcfn.CountHandler)
}
