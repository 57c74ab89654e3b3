package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/handoff-dev/handoff/api"
	"github.com/handoff-dev/handoff/workflow"
	"github.com/handoff-dev/handoff/xfer"
)

func cmdRun(args []string) error {
	fs := newFlags("run", "run FILE [-d DATA|@FILE] [--retry RUN] [--quiet]")
	data := fs.String("d", "", "the run's input (the first stages' request body): DATA, or @FILE")
	quiet := fs.Bool("quiet", false, "print only the summary")
	retry := fs.String("retry", "", "run again with the input of this earlier run (its id)")
	c, err := connect(fs, args, 1)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	wf, err := workflow.Parse(b)
	if err != nil {
		return err
	}
	var input []byte
	switch {
	case strings.HasPrefix(*data, "@"):
		if input, err = os.ReadFile((*data)[1:]); err != nil {
			return err
		}
	default:
		input = []byte(*data)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := c.PutWorkflow(ctx, wf.Name, b); err != nil {
		return err
	}
	var run api.Run
	if *retry != "" {
		run, err = c.RetryRun(ctx, wf.Name, *retry)
	} else {
		run, err = c.StartRun(ctx, wf.Name, input)
	}
	if err != nil {
		return err
	}
	var progress io.Writer = os.Stderr
	if *quiet {
		progress = io.Discard
	}
	final, err := followRun(ctx, c, run, progress)
	if err != nil {
		return err
	}
	printRunSummary(os.Stdout, final)
	for _, r := range final.Results {
		fmt.Printf("result %s: %s\n", r.Task, strings.TrimSpace(string(r.Output)))
	}
	if final.State != "succeeded" {
		return fmt.Errorf("run %s %s: %s", final.ID, final.State, final.Error)
	}
	return nil
}

// followRun polls a run until it ends, printing a progress line per stage
// every second; an interrupt cancels the run.
func followRun(ctx context.Context, c *api.Client, run api.Run, w io.Writer) (api.Run, error) {
	fmt.Fprintf(w, "run %s of workflow %s started\n", run.ID, run.Workflow)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := map[string]int64{}
	lastAt := time.Now()
	canceled := false
	for {
		select {
		case <-ctx.Done():
			if !canceled {
				canceled = true
				fmt.Fprintln(w, "canceling the run…")
				cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_ = c.CancelRun(cctx, run.Workflow, run.ID)
				cancel()
			}
		case <-tick.C:
		}
		pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cur, err := c.Run(pctx, run.Workflow, run.ID)
		cancel()
		if err != nil {
			return run, err
		}
		if cur.Done() {
			return cur, nil
		}
		now := time.Now()
		dt := now.Sub(lastAt).Seconds()
		var parts []string
		for _, st := range cur.Stages {
			rate := float64(st.BytesOut-last[st.Name]) / dt
			last[st.Name] = st.BytesOut
			parts = append(parts, fmt.Sprintf("%s %d/%d in %s out %s (%s/s)", st.Name, st.Done, st.Tasks,
				xfer.Human(st.BytesIn), xfer.Human(st.BytesOut), xfer.Human(int64(rate))))
		}
		lastAt = now
		fmt.Fprintf(w, "[%5.1fs] %s: %s\n", cur.Elapsed.Seconds(), cur.State, strings.Join(parts, " | "))
		if canceled && ctx.Err() != nil && cur.State == "canceling" {
			continue
		}
	}
}

func printRunSummary(w io.Writer, r api.Run) {
	fmt.Fprintf(w, "run %s: %s in %s (set-up %s)\n", r.ID, r.State, r.Elapsed.Round(time.Millisecond), r.Prepare.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tTASKS\tNODES\tIN\tOUT\tTHROUGHPUT")
	secs := r.Elapsed.Seconds()
	for _, st := range r.Stages {
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\t%s/s\n", st.Name, st.Done, st.Tasks, strings.Join(st.Nodes, ","),
			xfer.Human(st.BytesIn), xfer.Human(st.BytesOut), xfer.Human(int64(float64(st.BytesOut)/secs)))
	}
	tw.Flush()
	fmt.Fprintln(tw, "EDGE\tPATTERN\tMODE\tCHANNELS\tCROSS-NODE\tBYTES\tWHY")
	for _, e := range r.Edges {
		fmt.Fprintf(tw, "%s→%s\t%s\t%s\t%d\t%d\t%s\t%s\n", e.From, e.To, e.Pattern, e.Mode, e.Channels, e.CrossNode, xfer.Human(e.Bytes), e.Reason)
	}
	tw.Flush()
	if r.Error != "" {
		fmt.Fprintln(w, "error:", r.Error)
	}
}
