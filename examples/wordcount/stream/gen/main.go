// Command wcs-gen is the gen stage of the streaming word count (package wcstage).
package main

import (
	"github.com/handoff-dev/handoff/examples/wordcount/stream/wcstage"
	"github.com/handoff-dev/handoff/sdk"
)

func main() { sdk.ServeStage(wcstage.Gen) }
