package node

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/handoff-dev/handoff/supervisor"
	"github.com/handoff-dev/handoff/xfer"
)

// metrics are the node agent's Prometheus metrics, in a registry of its own so
// that several agents can live in one process (tests, benchmarks).
type metrics struct {
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
		reg: prometheus.NewRegistry(),
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
