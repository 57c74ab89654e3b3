// Command merge is the wc-merge function of the wordcount example: it merges
// word counts and returns the total, the number of distinct words and the
// top 10. The logic is in package wcfn; the JSON formats are in package wc.
package main

import (
	"github.com/handoff-dev/handoff/examples/wordcount/wcfn"
	"github.com/handoff-dev/handoff/sdk"
)

func main() {
	sdk.Serve(wcfn.MergeHandler)
}
