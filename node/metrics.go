package node

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/handoff-dev/handoff/buffer"
	"github.com/handoff-dev/handoff/refpass"
	"github.com/handoff-dev/handoff/supervisor"
	"github.com/handoff-dev/handoff/xfer"
)

// metrics are the node agent's Prometheus metrics, in a registry of its own so
// that several agents can live in one process (tests, benchmarks).
type metrics struct {
	labels        prometheus.Labels
	reg           *prometheus.Registry
	invocations   *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	bytes         *prometheus.CounterVec
	coldStart     *prometheus.HistogramVec
	startFailures *prometheus.CounterVec
	stateChanges  *prometheus.CounterVec
	localCalls    *prometheus.CounterVec
	localLatency  *prometheus.HistogramVec
}

func newMetrics(node string) *metrics {
	labels := prometheus.Labels{"node": node}
	m := &metrics{
		labels: labels,
		reg:    prometheus.NewRegistry(),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_node_invocations_total", Help: "Invocations proxied to instances on this node.", ConstLabels: labels,
		}, []string{"function", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "handoff_node_invocation_seconds", Help: "Time from proxy entry to the end of the instance's response.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 20),
		}, []string{"function"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_node_bytes_total", Help: "Payload bytes moved through this node, by transfer mode and direction.", ConstLabels: labels,
		}, []string{"mode", "direction"}),
		coldStart: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "handoff_node_cold_start_seconds", Help: "Instance spawn to ready.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(1e-3, 2, 14),
		}, []string{"function"}),
		startFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_node_start_failures_total", Help: "Instances that failed to start.", ConstLabels: labels,
		}, []string{"function"}),
		stateChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_node_instance_transitions_total", Help: "Instance state changes, by the state entered.", ConstLabels: labels,
		}, []string{"function", "state"}),
		localCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_node_local_calls_total", Help: "Function-to-function calls made by instances through the local API.", ConstLabels: labels,
		}, []string{"function", "code"}),
		localLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "handoff_node_local_call_seconds", Help: "Function-to-function call latency seen at the caller's node agent.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 20),
		}, []string{"function"}),
	}
	m.reg.MustRegister(m.invocations, m.latency, m.bytes, m.coldStart, m.startFailures, m.stateChanges, m.localCalls, m.localLatency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) observeInvoke(fn string, status int, d time.Duration, in, out int64) {
	m.invocations.WithLabelValues(fn, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(fn).Observe(d.Seconds())
	m.bytes.WithLabelValues(string(xfer.Inline), "in").Add(float64(in))
	m.bytes.WithLabelValues(string(xfer.Inline), "out").Add(float64(out))
}

func (m *metrics) observeLocal(fn string, status int, d time.Duration, in, out int64) {
	m.localCalls.WithLabelValues(fn, strconv.Itoa(status)).Inc()
	m.localLatency.WithLabelValues(fn).Observe(d.Seconds())
}

func (m *metrics) instanceState(fn string, s supervisor.State) {
	m.stateChanges.WithLabelValues(fn, s.String()).Inc()
}

// watchRefs exports the buffer store's and reference passing's counters,
// read when scraped.
func (m *metrics) watchRefs(s *refpass.Service) {
	labels := m.labels
	st := s.Stats()
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	store := func(f func(buffer.Stats) float64) func() float64 {
		return func() float64 { return f(s.Store().Stats()) }
	}
	m.reg.MustRegister(
		gauge("handoff_node_buffers", "Payload buffers held.", store(func(x buffer.Stats) float64 { return float64(x.Buffers) })),
		gauge("handoff_node_buffer_memory_bytes", "Bytes of payload buffers in memory.", store(func(x buffer.Stats) float64 { return float64(x.MemoryBytes) })),
		gauge("handoff_node_buffer_spilled_bytes", "Bytes of payload buffers spilled to local disk.", store(func(x buffer.Stats) float64 { return float64(x.SpilledBytes) })),
		gauge("handoff_node_buffer_budget_bytes", "Memory budget of payload buffers.", store(func(x buffer.Stats) float64 { return float64(x.BudgetBytes) })),
		counter("handoff_node_buffer_spills_total", "Buffers that found no memory and spilled to disk.", store(func(x buffer.Stats) float64 { return float64(x.Spills) })),
		counter("handoff_node_buffer_full_total", "Buffers refused because the memory budget stayed full.", store(func(x buffer.Stats) float64 { return float64(x.Refusals) })),
		counter("handoff_node_buffers_expired_total", "Buffers freed at expiry, unread.", store(func(x buffer.Stats) float64 { return float64(x.Expired) })),
		counter("handoff_node_ref_puts_total", "References created here.", func() float64 { return float64(st.Puts.Load()) }),
		counter("handoff_node_ref_put_bytes_total", "Bytes put behind references here.", func() float64 { return float64(st.PutBytes.Load()) }),
		counter("handoff_node_ref_local_opens_total", "References opened from this node's own buffers (no network).", func() float64 { return float64(st.Local.Load()) }),
		counter("handoff_node_ref_pulls_served_total", "Pulls other members made from this node.", func() float64 { return float64(st.Served.Load()) }),
		counter("handoff_node_ref_pulled_served_bytes_total", "Bytes other members pulled from this node.", func() float64 { return float64(st.ServedBytes.Load()) }),
		counter("handoff_node_ref_pulls_total", "Pulls this node made from other members.", func() float64 { return float64(st.Pulls.Load()) }),
		counter("handoff_node_ref_pulled_bytes_total", "Bytes this node pulled from other members.", func() float64 { return float64(st.PullBytes.Load()) }),
		counter("handoff_node_ref_refusals_total", "Opens and pulls refused: forged, expired, wrong reader, exhausted, gone.", func() float64 { return float64(st.Refused.Load()) }),
		counter("handoff_node_ref_reads_taken_total", "Reads other members took from this node without the bytes (they serve their copy).", func() float64 { return float64(st.Taken.Load()) }),
		counter("handoff_node_ref_copy_reads_total", "Reads served from this node's copy of a payload held elsewhere (broadcast).", func() float64 { return float64(st.Copied.Load()) }),
		counter("handoff_node_buffers_adopted_total", "Buffers taken over from draining members.", func() float64 { return float64(st.Adopted.Load()) }),
	)
}
