// Command wcs-map is the map stage of the streaming word count (package wcstage).
package main

import (
	"github.com/handoff-dev/handoff/examples/wordcount/stream/wcstage"
	"github.com/handoff-dev/handoff/sdk"
)

func main() { sdk.ServeStage(wcstage.Map) }
