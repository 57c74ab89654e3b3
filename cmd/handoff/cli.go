package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/spec"
	"github.com/handoff-dev/handoff/xfer"
)

// connect adds --gateway and --token to fs, parses args, checks that exactly
// want positional arguments remain, and
// returns a client for the platform: the gateway from the flag, else
// $HANDOFF_GATEWAY, else the platform that `handoff up` last started with the
// default state directory; the admin token from the flag, else
// $HANDOFF_TOKEN, else that directory's admin.token.
func connect(fs *flag.FlagSet, args []string, want int) (*api.Client, error) {
	g := fs.String("gateway", "", "gateway URL (default $HANDOFF_GATEWAY, else the platform handoff up started last)")
	tok := fs.String("token", "", "admin token for the management API (default $HANDOFF_TOKEN, else admin.token in the default state directory)")
	if err := parse(fs, reorder(fs, args)); err != nil {
		return nil, err
	}
	if fs.NArg() != want {
		return nil, fmt.Errorf("got %d arguments, want %d; usage: handoff %s", fs.NArg(), want, usages[fs.Name()])
	}
	url := *g
	if url == "" {
		url = os.Getenv("HANDOFF_GATEWAY")
	}
	if url == "" {
		b, err := os.ReadFile(filepath.Join(defaultDir(), "gateway"))
		if err != nil {
			return nil, errors.New("no platform found: start one with `handoff up`, or give --gateway / $HANDOFF_GATEWAY")
		}
		url = strings.TrimSpace(string(b))
	}
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	c := api.NewClient(url)
	c.Token = *tok
	if c.Token == "" {
		c.Token = os.Getenv("HANDOFF_TOKEN")
	}
	if c.Token == "" {
		if b, err := os.ReadFile(filepath.Join(defaultDir(), "admin.token")); err == nil {
			c.Token = strings.TrimSpace(string(b))
		}
	}
	return c, nil
}

func cmdDeploy(args []string) error {
	fs := newFlags("deploy", "deploy -f SPEC.yaml")
	file := fs.String("f", "", "function spec (YAML)")
	c, err := connect(fs, args, 0)
	if err != nil {
		return err
	}
	if *file == "" {
		return errors.New("give the spec with -f SPEC.yaml")
	}
	f, err := spec.ParseFile(*file)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	got, err := c.Deploy(ctx, f)
	if err != nil {
		return err
	}
	fmt.Printf("deployed %s (version %d)\n", got.Function.Name, got.Version)
	return nil
}

func cmdLs(args []string) error {
	fs := newFlags("ls", "ls")
	c, err := connect(fs, args, 0)
	if err != nil {
		return err
	}
	fns, err := c.Functions(context.Background())
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tREADY\tSTARTING\tIN-FLIGHT\tQUEUED\tSCALE\tCONCURRENCY\tMEMORY")
	for _, f := range fns {
		mem := "-"
		if f.Function.Memory > 0 {
			mem = f.Function.Memory.String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d..%d\t%d\t%s\n", f.Function.Name, f.Version, f.Ready, f.Starting, f.InFlight, f.Queued,
			f.Function.Scale.Min, f.Function.Scale.Max, f.Function.Concurrency, mem)
	}
	return tw.Flush()
}

func cmdRm(args []string) error {
	fs := newFlags("rm", "rm NAME")
	c, err := connect(fs, args, 1)
	if err != nil {
		return err
	}
	if err := c.Remove(context.Background(), fs.Arg(0)); err != nil {
		return err
	}
	fmt.Printf("removed %s\n", fs.Arg(0))
	return nil
}

func cmdInvoke(args []string) error {
	fs := newFlags("invoke", "invoke NAME [-d DATA|@FILE] [--async]")
	data := fs.String("d", "", "input: DATA, or @FILE to read a file (default: stdin)")
	async := fs.Bool("async", false, "queue the invocation and print its id")
	c, err := connect(fs, args, 1)
	if err != nil {
		return err
	}
	name := fs.Arg(0)
	var in io.Reader
	size := int64(-1)
	switch {
	case strings.HasPrefix(*data, "@"):
		fh, err := os.Open((*data)[1:])
		if err != nil {
			return err
		}
		defer fh.Close()
		if st, err := fh.Stat(); err == nil {
			size = st.Size()
		}
		in = fh
	case *data != "":
		in, size = strings.NewReader(*data), int64(len(*data))
	default:
		if st, err := os.Stdin.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			in, size = bytes.NewReader(nil), 0
		} else {
			in = os.Stdin
		}
	}
	ctx := context.Background()
	if *async {
		b, err := io.ReadAll(in)
		if err != nil {
			return err
		}
		acc, err := c.InvokeAsync(ctx, name, b)
		if err != nil {
			return err
		}
		fmt.Println(acc.ID)
		return nil
	}
	out, err := c.InvokeStream(ctx, name, in, size)
	if err != nil {
		return err
	}
	defer out.Close()
	_, err = io.Copy(os.Stdout, out)
	return err
}

// reorder moves flags after the positional arguments to the front, so that
// `handoff invoke echo -d hi` works as users expect. A flag takes the next
// argument as its value unless it is boolean or written -flag=value.
func reorder(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || len(a) == 1 {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil || i+1 == len(args) {
			continue // an unknown flag is parse's to report
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		flags = append(flags, args[i+1])
		i++
	}
	return append(flags, pos...)
}

func cmdResult(args []string) error {
	fs := newFlags("result", "result ID")
	c, err := connect(fs, args, 1)
	if err != nil {
		return err
	}
	inv, err := c.Invocation(context.Background(), fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Printf("%s %s attempts=%d", inv.ID, inv.Status, inv.Attempts)
	if inv.HTTPStatus != 0 {
		fmt.Printf(" http=%d", inv.HTTPStatus)
	}
	if inv.Error != "" {
		fmt.Printf(" error=%q", inv.Error)
	}
	fmt.Println()
	if inv.Output != nil {
		fmt.Print(*inv.Output)
	} else if inv.OutputBase64 != nil {
		os.Stdout.Write(inv.OutputBase64)
	}
	return nil
}

func cmdLogs(args []string) error {
	fs := newFlags("logs", "logs NAME")
	c, err := connect(fs, args, 1)
	if err != nil {
		return err
	}
	return c.Logs(context.Background(), fs.Arg(0), os.Stdout)
}

func cmdStatus(args []string) error {
	fs := newFlags("status", "status")
	c, err := connect(fs, args, 0)
	if err != nil {
		return err
	}
	st, err := c.Status(context.Background())
	if err != nil {
		return err
	}
	fmt.Printf("gateway %s\n\n", st.Gateway)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tS3 API\tSTORE MOUNT\tUP\tAGENT RSS\tINSTANCES")
	for _, n := range st.Nodes {
		fmt.Fprintf(tw, "%s\t%s\thttp://%s\t%s\t%v\t%s\t%d\n", n.ID, n.Addr, n.S3, n.StoreDir, n.Up, xfer.Human(n.RSS), len(n.Instances))
	}
	fmt.Fprintln(tw, "\nINSTANCE\tFUNCTION\tNODE\tSTATE\tPID\tMEMORY\tRESTARTS\tCOLD START")
	for _, n := range st.Nodes {
		for _, in := range n.Instances {
			mem := xfer.Human(in.MemoryBytes)
			if !in.MemoryLimitEnforced {
				mem += " (no limit)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n", in.ID, in.Function, n.ID, in.State, in.PID, mem, in.Restarts, in.ColdStart.Round(time.Microsecond))
		}
	}
	fmt.Fprintln(tw, "\nFUNCTION\tREADY\tSTARTING\tIN-FLIGHT\tQUEUED\tDESIRED\tWHY")
	for _, f := range st.Functions {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", f.Function.Name, f.Ready, f.Starting, f.InFlight, f.Queued, f.Desired, f.Reason)
	}
	tw.Flush()
	if len(st.Async) > 0 {
		fmt.Printf("\nasync invocations: queued=%d running=%d succeeded=%d failed=%d\n", st.Async["queued"], st.Async["running"], st.Async["succeeded"], st.Async["failed"])
	}
	return nil
}

func cmdLeases(args []string) error {
	fs := newFlags("leases", "leases")
	c, err := connect(fs, args, 0)
	if err != nil {
		return err
	}
	ctx := context.Background()
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LEASE\tNODE\tFUNCTION\tSTATE\tMODE\tEXECUTORS\tEXPIRES IN\tALLOCATED\tBUSY\tHOT POLLING\tCALLS")
	for _, n := range st.Nodes {
		if !n.Up {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.Addr+"/v1/leases", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+c.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("node %s: %w", n.ID, err)
		}
		var ls []api.LeaseInfo
		err = json.NewDecoder(resp.Body).Decode(&ls)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("node %s answered %s: %w", n.ID, resp.Status, err)
		}
		for _, l := range ls {
			up := 0
			for _, e := range l.Executors {
				if e.State == "up" {
					up++
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d up\t%s\t%s\t%s\t%s\t%d\n", l.ID[:12], l.Node, l.Function, l.State, l.Mode,
				up, len(l.Executors), time.Until(l.Expires).Round(time.Second), l.Allocated.Round(time.Millisecond),
				l.Busy.Round(time.Microsecond), l.HotPolling.Round(time.Millisecond), l.Invocations)
		}
	}
	return tw.Flush()
}
