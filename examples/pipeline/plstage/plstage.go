// Package plstage holds the stages of the three-stage pipeline example:
// sensor readings are generated, transformed while they flow, and
// aggregated, without a byte touching disk.
//
//	pl-gen        write params "bytes" (all tasks together) of CSV readings
//	              "sensor,seq,tenths_celsius" to output "out"
//	pl-transform  convert each reading to Fahrenheit and drop the faulty ones
//	              (below -50 °C), writing "sensor,fahrenheit"
//	pl-aggregate  per sensor: count, min, max and mean, as the run's result
package plstage

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"

	"github.com/handoff-dev/handoff/sdk"
	"github.com/handoff-dev/handoff/spec"
)

// Sensors is how many sensors the generator simulates.
const Sensors = 64

// Gen writes this task's share of the readings.
func Gen(ctx context.Context, s *sdk.Stage) error {
	total, err := spec.ParseBytes(s.Param("bytes", "64Mi"))
	if err != nil {
		return fmt.Errorf("pl-gen: param bytes: %w", err)
	}
	share := int64(total) / int64(s.Count)
	w := bufio.NewWriterSize(s.Output("out"), 256<<10)
	x := uint64(s.Index)*0x9e3779b97f4a7c15 + 1
	var line []byte
	for seq, written := int64(0), int64(0); written < share; seq++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		sensor := x % Sensors
		tenths := int64(x>>32%1200) - 600 // -60.0 .. 59.9 °C
		line = append(line[:0], "sensor-"...)
		line = strconv.AppendUint(line, sensor, 10)
		line = append(line, ',')
		line = strconv.AppendInt(line, seq, 10)
		line = append(line, ',')
		line = strconv.AppendInt(line, tenths, 10)
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil {
			return err
		}
		written += int64(len(line))
		if seq%65536 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return w.Flush()
}

// Transform converts readings to Fahrenheit and drops faulty ones.
func Transform(ctx context.Context, s *sdk.Stage) error {
	sc := bufio.NewScanner(s.Input("in"))
	sc.Buffer(make([]byte, 256<<10), 1<<20)
	w := bufio.NewWriterSize(s.Output("out"), 256<<10)
	var line []byte
	for sc.Scan() {
		f := bytes.Split(sc.Bytes(), []byte{','})
		if len(f) != 3 {
			return fmt.Errorf("pl-transform: bad reading %q: want sensor,seq,tenths", sc.Bytes())
		}
		tenths, err := strconv.ParseInt(string(f[2]), 10, 64)
		if err != nil {
			return fmt.Errorf("pl-transform: bad reading %q: %v", sc.Bytes(), err)
		}
		if tenths < -500 {
			continue // a faulty sensor
		}
		line = append(line[:0], f[0]...)
		line = append(line, ',')
		line = strconv.AppendFloat(line, float64(tenths)/10*9/5+32, 'f', 2, 64)
		line = append(line, '\n')
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return w.Flush()
}

// Stat is one sensor's aggregate.
type Stat struct {
	Sensor string  `json:"sensor"`
	Count  int64   `json:"count"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Mean   float64 `json:"mean"`
}

// Result is pl-aggregate's answer.
type Result struct {
	Readings int64  `json:"readings"`
	Sensors  []Stat `json:"sensors"`
}

// Aggregate reduces every transformer's readings, all parts at once so no
// transformer waits for another, then merges the parts' aggregates.
func Aggregate(ctx context.Context, s *sdk.Stage) error {
	ins := s.Inputs("in")
	parts := make([]map[string]*Stat, len(ins))
	counts := make([]Result, len(ins))
	errs := make([]error, len(ins))
	var wg sync.WaitGroup
	for i, in := range ins {
		parts[i] = map[string]*Stat{}
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = aggregate(in, parts[i], &counts[i]) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	stats := map[string]*Stat{}
	var res Result
	for i, part := range parts {
		res.Readings += counts[i].Readings
		for name, p := range part {
			st := stats[name]
			if st == nil {
				stats[name] = p
				continue
			}
			st.Count += p.Count
			st.Min, st.Max, st.Mean = min(st.Min, p.Min), max(st.Max, p.Max), st.Mean+p.Mean
		}
	}
	for _, st := range stats {
		st.Mean /= float64(st.Count)
		res.Sensors = append(res.Sensors, *st)
	}
	sort.Slice(res.Sensors, func(i, j int) bool { return res.Sensors[i].Sensor < res.Sensors[j].Sensor })
	return json.NewEncoder(s.Result).Encode(res)
}

func aggregate(in io.Reader, stats map[string]*Stat, res *Result) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 256<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := bytes.Cut(sc.Bytes(), []byte{','})
		f, err := strconv.ParseFloat(string(v), 64)
		if !ok || err != nil {
			return fmt.Errorf("pl-aggregate: bad line %q: want sensor,fahrenheit", sc.Bytes())
		}
		st := stats[string(name)]
		if st == nil {
			st = &Stat{Sensor: string(name), Min: f, Max: f}
			stats[string(name)] = st
		}
		st.Count++
		st.Min, st.Max, st.Mean = min(st.Min, f), max(st.Max, f), st.Mean+f
		res.Readings++
	}
	return sc.Err()
}
