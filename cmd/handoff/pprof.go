package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
)

// servePprof serves Go's profiler on $HANDOFF_PPROF (e.g. 127.0.0.1:6060 for
// the control plane; node agents add their index to the port) when it is set.
// It is off by default: profiles reveal internals and cost nothing unused.
func servePprof(log *slog.Logger, portOffset int) {
	addr := os.Getenv("HANDOFF_PPROF")
	if addr == "" {
		return
	}
	if host, port, err := net.SplitHostPort(addr); err == nil && portOffset > 0 {
		if p, err := strconv.Atoi(port); err == nil {
			addr = net.JoinHostPort(host, strconv.Itoa(p+portOffset))
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Warn("pprof not served", "addr", addr, "err", err)
		return
	}
	log.Info("pprof serving", "addr", ln.Addr().String())
	go http.Serve(ln, mux)
}
