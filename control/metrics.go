package control

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/handoff-dev/handoff/xfer"
)

// metrics are the gateway's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg           *prometheus.Registry
	invocations   *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	bytes         *prometheus.CounterVec
	coldStarts    *prometheus.CounterVec
	coldStart     prometheus.Histogram
	startFailures *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_invocations_total", Help: "Invocations through the gateway, by function and HTTP status.",
		}, []string{"function", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "handoff_invocation_seconds", Help: "Gateway invocation latency, queueing included.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 22),
		}, []string{"function"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_bytes_total", Help: "Payload bytes moved through the gateway, by transfer mode and direction.",
		}, []string{"mode", "direction"}),
		coldStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_cold_starts_total", Help: "Instances started.",
		}, []string{"function"}),
		coldStart: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "handoff_cold_start_seconds", Help: "Placement decision to instance ready, as seen by the control plane.",
			Buckets: prometheus.ExponentialBuckets(1e-3, 2, 14),
		}),
		startFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_start_failures_total", Help: "Instance starts that failed.",
		}, []string{"function"}),
	}
	instances := prometheus.NewDesc("handoff_instances", "Instances by function and state.", []string{"function", "state"}, nil)
	queued := prometheus.NewDesc("handoff_queued_requests", "Requests waiting for a free instance.", []string{"function"}, nil)
	m.reg.MustRegister(m.invocations, m.latency, m.bytes, m.coldStarts, m.coldStart, m.startFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectorFunc{descs: []*prometheus.Desc{instances, queued}, collect: func(ch chan<- prometheus.Metric) {
			for _, name := range s.functionNames() {
				f := s.function(name)
				if f == nil {
					continue
				}
				v := s.view(f)
				ch <- prometheus.MustNewConstMetric(instances, prometheus.GaugeValue, float64(v.Ready), name, "ready")
				ch <- prometheus.MustNewConstMetric(instances, prometheus.GaugeValue, float64(v.Starting), name, "starting")
				ch <- prometheus.MustNewConstMetric(instances, prometheus.GaugeValue, float64(v.Draining), name, "draining")
				ch <- prometheus.MustNewConstMetric(queued, prometheus.GaugeValue, float64(v.Queued), name)
			}
		}})
	return m
}

func (m *metrics) handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

func (m *metrics) observe(fn string, status int, d time.Duration, in, out int64) {
	m.invocations.WithLabelValues(fn, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(fn).Observe(d.Seconds())
	m.bytes.WithLabelValues(string(xfer.Inline), "in").Add(float64(in))
	m.bytes.WithLabelValues(string(xfer.Inline), "out").Add(float64(out))
}

// collectorFunc adapts a function to prometheus.Collector.
type collectorFunc struct {
	descs   []*prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
