// Command gen is the wc-gen function of the wordcount example: it generates
// chunk i of the word-count corpus and hands it to wc-count, in the
// invocation body or, for the S3 baseline, through S3. The logic is in
// package wcfn; the JSON formats are in package wc.
package main

import (
	"github.com/handoff-dev/handoff/examples/wordcount/wcfn"
	"github.com/handoff-dev/handoff/sdk"
)

func main() {
	sdk.Serve(wcfn.GenHandler)
}
