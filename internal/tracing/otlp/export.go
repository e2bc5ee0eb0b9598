package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// exporter sends batches of spans to an OTLP/HTTP endpoint
// (sdktrace.SpanExporter): protobuf (encode.go), gzipped or not, POSTed
// with the configured headers, tried again on a busy or restarting
// collector within the export's context (retryDelay). It replaces the
// SDK's otlptracehttp, which cost about 30 allocations a span and 2.2 MiB
// of binary, gRPC included (issue 27; docs/performance.md).
type exporter struct {
	url     string
	header  http.Header // sent with every export; the configured values are credentials: never logged
	client  *http.Client
	gzip    bool
	backoff time.Duration // the first pause before a try again, doubled each time up to maxBackoff

	mu   sync.Mutex // the queue's goroutine is the only caller, but the SDK's contract allows any
	enc  encoder
	zbuf bytes.Buffer
	zw   *gzip.Writer
}

const (
	firstBackoff = time.Second
	maxBackoff   = 5 * time.Second
)

func newExporter(cfg config.Tracing, version string) (*exporter, error) {
	client, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	for _, kv := range cfg.Headers {
		h.Set(kv.Name, kv.Value.Value())
	}
	h.Set("Content-Type", "application/x-protobuf")
	ua := "payrails-mtls-proxy"
	if version != "" {
		ua += "/" + version
	}
	h.Set("User-Agent", ua)
	if cfg.Gzip {
		h.Set("Content-Encoding", "gzip")
	}
	return &exporter{url: cfg.Endpoint.String(), header: h, client: client, gzip: cfg.Gzip, backoff: firstBackoff}, nil
}

// ExportSpans implements sdktrace.SpanExporter: it sends spans, trying
// again within ctx when the collector is busy or restarting. A
// *PartialError says the collector rejected some.
func (x *exporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if len(spans) == 0 {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	body := x.enc.encode(spans)
	if x.gzip {
		var err error
		if body, err = x.compress(body); err != nil {
			return err
		}
	}
	for tries := 0; ; tries++ {
		err := x.post(ctx, body)
		wait, again := retryDelay(err, tries, x.backoff)
		if !again {
			return err
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return fmt.Errorf("%w (not tried again: the next try would be after the export timeout)", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (not tried again: %w)", err, context.Cause(ctx))
		}
	}
}

// Shutdown implements sdktrace.SpanExporter: it closes the idle
// connection to the collector.
func (x *exporter) Shutdown(context.Context) error {
	x.client.CloseIdleConnections()
	return nil
}

func (x *exporter) compress(body []byte) ([]byte, error) {
	x.zbuf.Reset()
	if x.zw == nil {
		// BestSpeed: a sidecar's CPU is the requests'; spans compress well even so.
		x.zw, _ = gzip.NewWriterLevel(&x.zbuf, gzip.BestSpeed)
	} else {
		x.zw.Reset(&x.zbuf)
	}
	if _, err := x.zw.Write(body); err != nil {
		return nil, err
	}
	if err := x.zw.Close(); err != nil {
		return nil, err
	}
	return x.zbuf.Bytes(), nil
}

// post is one try: nil when the collector took the spans, a *PartialError
// when it took some, a *statusError when it answered anything but a 2xx,
// or net/http's error.
func (x *exporter) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header = x.header.Clone()
	resp, err := x.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	proto := resp.Header.Get("Content-Type") == "application/x-protobuf"
	switch {
	case resp.StatusCode/100 == 2 && proto && err == nil:
		// A 2xx took the spans; an answer that cannot be read says no more.
		if pe, _ := partialSuccess(data); pe != nil {
			return pe
		}
		return nil
	case resp.StatusCode/100 == 2:
		return nil
	}
	se := &statusError{url: x.url, status: resp.Status, code: resp.StatusCode, retryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	if proto {
		se.message = statusMessage(data)
	} else if err == nil {
		se.message = string(data)
	}
	if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 && loc != "" {
		se.message = "redirected to " + loc + "; set the endpoint to where it points"
	}
	return se
}

// statusError is an answer other than a 2xx.
type statusError struct {
	url, status string
	code        int
	retryAfter  time.Duration // the Retry-After it came with; 0 when none
	message     string        // what the collector said
}

func (e *statusError) Error() string {
	msg := "POST " + e.url + ": " + e.status
	if m := printable(e.message); m != "" {
		msg += ": " + m
	}
	return msg
}

// retryDelay is the one retry policy of an export: whether a failed try is
// tried again, and after how long. A collector that is busy or restarting
// answers 429, 502, 503 or 504 (the OTLP specification's retryable
// statuses; their Retry-After is honoured), or refuses or drops the
// connection; anything else is final, and so is the end of the export's
// context. The pause otherwise doubles from first (tries is the number of
// tries so far, less one) up to maxBackoff, with jitter so that sidecars
// sharing a collector do not come back together.
func retryDelay(err error, tries int, first time.Duration) (time.Duration, bool) {
	var se *statusError
	var pe *PartialError
	switch {
	case err == nil, errors.As(err, &pe), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return 0, false
	case errors.As(err, &se):
		switch se.code {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		default:
			return 0, false
		}
		if se.retryAfter > 0 {
			return se.retryAfter, true
		}
	case !connectionTrouble(err):
		return 0, false
	}
	d := min(first<<min(tries, 16), maxBackoff)
	return d/2 + rand.N(d/2+1), true
}

// retryAfter parses a Retry-After value (RFC 9110 §10.2.3): seconds, or an
// HTTP date; 0 when there is none or it cannot be read.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, int64(time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
