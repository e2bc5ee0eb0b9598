package admin

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Upstream is what the admin endpoints read from one upstream's
// certificate store. Every function must be safe for concurrent use. The
// certificate metrics are not read through it: /metrics serves
// Config.Gatherer, in which the caller registers them.
type Upstream struct {
	Name   string
	Ready  func() error    // nil when a valid certificate is presented now
	Notes  func() []string // non-fatal remarks, e.g. expiry within 30 days
	Report func() any      // the /certs JSON for this upstream
}

// Config is everything New needs.
type Config struct {
	Upstreams []Upstream
	Gatherer  prometheus.Gatherer // what /metrics serves: every metric of the process
	// Pprof adds Go's profiling endpoints under /debug/pprof/. Off by
	// default: profiles reveal internals, and the admin port may be reachable
	// from the pod network.
	Pprof bool
}

// New returns the admin handler.
func New(c Config) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { readyz(w, c.Upstreams) })
	mux.HandleFunc("GET /certs", func(w http.ResponseWriter, _ *http.Request) {
		out := make([]any, 0, len(c.Upstreams))
		for _, u := range c.Upstreams {
			out = append(out, u.Report())
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.Gatherer, promhttp.HandlerOpts{}))
	if c.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

type readiness struct {
	Ready     bool                     `json:"ready"`
	Upstreams map[string]upstreamReady `json:"upstreams"`
}

type upstreamReady struct {
	Ready  bool     `json:"ready"`
	Reason string   `json:"reason,omitempty"`
	Notes  []string `json:"notes,omitempty"`
}

// readyz answers 200 when every upstream presents a valid certificate, and
// 503 with each reason otherwise. Notes never make it fail.
func readyz(w http.ResponseWriter, ups []Upstream) {
	r := readiness{Ready: true, Upstreams: map[string]upstreamReady{}}
	for _, u := range ups {
		ur := upstreamReady{Ready: true, Notes: u.Notes()}
		if err := u.Ready(); err != nil {
			ur.Ready, ur.Reason, r.Ready = false, err.Error(), false
		}
		r.Upstreams[u.Name] = ur
	}
	status := http.StatusOK
	if !r.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, r)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
