// Package bench is the core of the benchmark harness behind `handoff bench`.
//
// A benchmark hands payloads of growing sizes from a producer to a consumer
// through one or more [Transfer]s (Handoff's own modes, the raw limits of the
// machine from package bench/raw, and real baseline stores from package
// bench/baseline) and records latency per (series, size) as a [Point].
//
// The machine is noisy and shared, so every figure worth quoting is a ratio
// against a baseline measured in the same run (see [Ratio]). [RunTransfers]
// interleaves the series round by round at each size so that noise hits all
// of them alike, and it verifies every byte the consumer got against the
// payload's checksum: a benchmark that loses or corrupts data fails instead of
// reporting a fast figure.
//
// # Usage
//
//	ts := []bench.Transfer{raw.NewMemcpy(), tcp, redis}
//	res, err := bench.RunTransfers(ctx, bench.Options{
//		Sizes:    bench.DefaultSizes(),
//		Budget:   2 * time.Second,
//		Progress: os.Stderr,
//	}, ts)
//	report.WriteMarkdown(os.Stdout, res)
//
// Package bench/report writes a [Result] as JSON, Markdown or a PNG plot, and
// package bench/load drives HTTP endpoints for `handoff bench invoke`.
package bench
