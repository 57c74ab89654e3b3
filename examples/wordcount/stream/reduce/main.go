// Command wcs-reduce is the reduce stage of the streaming word count (package wcstage).
package main

import (
	"github.com/handoff-dev/handoff/examples/wordcount/stream/wcstage"
	"github.com/handoff-dev/handoff/sdk"
)

func main() { sdk.ServeStage(wcstage.Reduce) }
