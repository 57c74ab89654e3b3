// Command pl-transform is the transform stage of the pipeline example (package plstage).
package main

import (
	"github.com/handoff-dev/handoff/examples/pipeline/plstage"
	"github.com/handoff-dev/handoff/sdk"
)

func main() { sdk.ServeStage(plstage.Transform) }
