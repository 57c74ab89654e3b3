// Command handoff is the single binary of the Handoff platform: it runs the
// embedded platform (`handoff up`), a node agent (`handoff node`), the CLI
// that drives a running platform, the benchmark harness and the demo.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

type command struct {
	name, usage, help string
	run               func(args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"up", "up [--dir D] [--listen ADDR] [--nodes N]", "run the platform in the foreground", cmdUp},
		{"deploy", "deploy -f SPEC.yaml", "deploy or update a function", cmdDeploy},
		{"ls", "ls", "list deployed functions", cmdLs},
		{"rm", "rm NAME", "remove a function and stop its instances", cmdRm},
		{"invoke", "invoke NAME [-d DATA|@FILE] [--async]", "invoke a function (stdin to stdout by default)", cmdInvoke},
		{"result", "result ID", "show an async invocation's status and result", cmdResult},
		{"logs", "logs NAME", "print a function's instance logs", cmdLogs},
		{"status", "status", "show nodes, instances, in-flight requests and memory", cmdStatus},
		{"run", "run FILE [-d DATA|@FILE] [--retry RUN] [--quiet]", "run a workflow with live progress and a summary", cmdRun},
		{"leases", "leases", "list leases of executors on every node, with their accounting", cmdLeases},
		{"bench", "bench invoke|transfer [--out DIR]", "measure the platform against baselines in one run", cmdBench},
		{"demo", "demo [--size 1Gi] [--no-baseline]", "run the word-count demo beside the MinIO (S3) baseline", cmdDemo},
		{"node", "node --id ID --dir D --control URL --token-file F", "run a node agent (started by `handoff up`)", cmdNode},
		{"csi", csiUsage, "serve the CSI driver that publishes store volumes into pods", cmdCSI},
		{"version", "version", "print the version", cmdVersion},
	}
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage(os.Stdout)
		return
	}
	for _, c := range commands {
		if c.name == os.Args[1] {
			if err := c.run(os.Args[2:]); err != nil {
				if errors.Is(err, flag.ErrHelp) {
					return
				}
				fmt.Fprintln(os.Stderr, "handoff "+c.name+": "+oneLine(err.Error()))
				os.Exit(1)
			}
			return
		}
	}
	fmt.Fprintf(os.Stderr, "handoff: unknown command %q; run `handoff help` for the list\n", os.Args[1])
	os.Exit(2)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Handoff moves data directly between serverless functions.")
	fmt.Fprintln(w, "\nUsage:")
	for _, c := range commands {
		fmt.Fprintf(w, "  handoff %-48s %s\n", c.usage, c.help)
	}
	fmt.Fprintln(w, "\nCommands that talk to a platform find it from --gateway, else $HANDOFF_GATEWAY,\nelse the platform `handoff up` last started with the default state directory.")
}

// oneLine keeps error output to one line unless the error carries a block
// (a compiler's output, a log tail) that the user needs to see.
func oneLine(s string) string {
	if strings.Count(s, "\n") > 0 && len(s) < 4000 {
		return s
	}
	return strings.ReplaceAll(s, "\n", "; ")
}

func cmdVersion(args []string) error {
	fmt.Println("handoff", versionString())
	return nil
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// defaultDir is the state directory `handoff up` uses without --dir.
func defaultDir() string {
	if d := os.Getenv("HANDOFF_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".handoff"
	}
	return filepath.Join(home, ".handoff")
}

// usages holds each command's usage line, for argument errors.
var usages = map[string]string{}

// newFlags returns a flag set that prints its usage on -h and whose errors
// become one line.
func newFlags(name, usage string) *flag.FlagSet {
	usages[name] = usage
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // errors are one line; -h prints the help (parse)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "usage: handoff %s\n", usages[fs.Name()])
			fs.SetOutput(os.Stderr)
			fs.PrintDefaults()
			return err
		}
		return fmt.Errorf("%v (see `handoff %s -h`)", err, fs.Name())
	}
	return nil
}
