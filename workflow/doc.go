/*
Package workflow is the pure core of Handoff's workflows: pipelines of stages
connected by edges, whose data is streamed proactively (as in Floki) or passed
by the mode each edge gets. It parses and validates a workflow, expands it into
tasks and channels, chooses each edge's mode (through xfer, the one place
where modes are chosen) and places the tasks on nodes.

The package does no I/O and starts no goroutines: the same inputs always give
the same plan. Running the plan is the caller's job: the control plane's
workflow runner invokes the tasks and the node agents open every channel
before any producer writes.

# Format

A workflow is one YAML document. Unknown fields, repeated keys and a second
document are errors; the comments give the defaults and the rules Validate
enforces.

	name: wordcount             # required; a DNS label, as a function name
	stages:                     # at least one
	  - name: gen               # required, unique; a DNS label
	    function: wc-gen        # required; a deployed function
	    parallelism: 4          # tasks, 1–1024 (default 1)
	    params: {size: 1GiB}    # strings handed to every task of the stage
	    interface: stream       # stream (default) or http, see below
	    overlap: true           # default true; false: the stage needs its
	                            # whole input before it produces (a sort)
	edges:
	  - from: gen               # "stage" or "stage.port"; the port defaults to out
	    to: count               # "stage" or "stage.port"; the port defaults to in
	    pattern: pipe           # pipe (default), broadcast, partition, merge, shuffle
	    mode: auto              # auto (default), inline, ref, stream, store
	    key: hash               # partition and shuffle only: hash (default)
	                            # or roundrobin
	    buffers: {count: 8, size: 128KiB}  # per channel: 1–1024 buffers of
	                            # 4 KiB–64 MiB (default 8 × 128 KiB = 1 MiB)
	    size: 64MiB             # optional: about how many bytes one channel
	                            # carries; lets small edges go inline

Sizes are a number of bytes or a number with a unit: KiB, MiB, GiB (also
written Ki, Mi, Gi), or k, M, G (decimal). Names of workflows, stages,
functions and ports are DNS labels: 1–63 lowercase letters, digits and '-',
starting with a letter and not ending with '-'.

A complete example is testdata/wordcount.yaml.

# Rules

Each port belongs to exactly one edge: a stage that feeds two stages has two
output ports (from: gen.words, from: gen.counts). The edges form a DAG: no
cycles. The pattern must fit the parallelism of the stages it joins, with N
producer tasks and M consumer tasks:

	pipe       N == M   task i feeds task i
	broadcast  N == 1   every consumer task gets all of the output
	partition  N == 1   the records are split over the M consumer tasks by key
	merge      M == 1   every producer task feeds the one consumer
	shuffle    any      every producer task feeds every consumer task, split by key

Key hash sends each record to the task its hash picks, so equal records meet;
roundrobin deals records out in turn. A pinned mode must be one xfer knows;
whether the platform runs it is checked by Build against the policy, not by
Parse. A store edge writes each channel into the cluster store as an object
of the run, deleted when the run ends. A workflow expands to at most MaxTasks
tasks and MaxChannels channels.

# Interfaces

An http stage runs any HTTP function: its one input is the request body and
its one output the response body, so it has at most one input port and one
output port. Its records are lines: when an http stage's output goes through
a partition or shuffle edge, or an http stage consumes one, the node agent
splits the body at newlines and spreads whole lines by key. A stream stage is
an SDK stage handler that gets its ports as pipes and may have any number of
each.

# Expansion

Every stage becomes Parallelism tasks, "<stage>-<index>" ("gen-0"), listed
with the stages in topological order (the earliest declared first among the
stages that are ready) and indexes ascending.

Each edge becomes one channel per pair of a producer task and a consumer task
that exchange data. A producer's output port has one part per consumer task
it feeds (pipe and merge: 1; broadcast, partition and shuffle: M), and a
consumer's input port one part per producer task feeding it (pipe, broadcast
and partition: 1; merge and shuffle: N). Part i of an output goes to consumer
task i, and part j of an input comes from producer task j; a pipe's single
parts join the tasks of the same index. Channels are numbered c0, c1... by
edge, then producer task, then part.

Every channel of an edge gets the mode xfer.Policy.ChooseEdge picks from the
edge's facts: its pin, its size hint, and whether the consumer stage
overlaps.

# Placement

Build places tasks greedily in plan order, so producers are placed before
their consumers: each task goes to the node with a free slot that already
holds the most of the tasks it shares channels with; ties go to the node
with the most free slots (which spreads the sources), then to the first
node in the list. Placement is deterministic. When the nodes offer fewer
slots than the plan has tasks, Build fails with ErrNoCapacity.

# Usage

	w, err := workflow.Parse(yamlBytes) // errors wrap workflow.ErrInvalid
	if err != nil {
		return err
	}
	plan, err := workflow.Build(w, nodes, policy)
	if err != nil {
		return err
	}
	for _, t := range plan.Tasks {
		// on node plan.Node[t.ID], open plan.Inputs(t.ID) and
		// plan.Outputs(t.ID) before any producer writes
	}

Code that builds a Workflow by hand calls ApplyDefaults and then Validate
(Build validates again). ApplyDefaults cannot default Stage.Overlap, whose
zero value means false.

# Errors

Parse and Validate report every problem at once: the error joins one
*FieldError per problem, each naming the line (when Parse knows it), the
stage or edge, and the field, and saying what to do:

	workflow: line 9: edge gen.out→count.in: pattern: pipe connects task i to task i and needs equal parallelism, but gen has 4 and count has 2; set both to the same, or use shuffle (all to all)
*/
package workflow
