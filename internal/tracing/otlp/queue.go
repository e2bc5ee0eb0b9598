package otlp

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/zap"
)

// queue is the span processor between the request path and the exporter.
// OnEnd, on the request's goroutine, puts a sampled span into a bounded
// ring and never waits: when the ring is full the span is dropped and
// counted. One goroutine, owned by the queue from newQueue to Shutdown,
// takes the spans out in batches and exports them, so that an export (a
// slow or absent collector, its retries) never delays a request. The
// goroutine is woken once a batch is waiting, not for every span (a
// channel of spans would wake it for each: a goroutine switch and a
// select per span on the proxy's one CPU; issue 27). The SDK's
// BatchSpanProcessor works like the channel and counts its drops where
// Prometheus cannot see them.
type queue struct {
	mu    sync.Mutex
	ring  []sdktrace.ReadOnlySpan // the spans waiting: n of them from head, wrapping around
	head  int
	n     int
	ready chan struct{} // holds a signal once a batch is waiting (1-buffered)

	exp      sdktrace.SpanExporter
	batch    int
	interval time.Duration
	timeout  time.Duration // of one export, retries included
	m        *metrics
	log      *zap.Logger
	flush    chan chan struct{}   // ForceFlush: export everything queued, then close the channel sent
	stop     chan context.Context // Shutdown: export what is queued within the context, then return
	done     chan struct{}        // closed when the goroutine has returned
	base     context.Context      // of every export; cancelled when Shutdown's context ends
	cancel   context.CancelFunc
	failures failureLog // the goroutine's own
}

func newQueue(exp sdktrace.SpanExporter, o Options, timeout time.Duration, m *metrics, log *zap.Logger) *queue {
	q := &queue{exp: exp, batch: o.Batch, interval: o.Interval, timeout: timeout, m: m, log: log, ready: make(chan struct{}, 1),
		flush: make(chan chan struct{}), stop: make(chan context.Context), done: make(chan struct{})}
	size := o.Queue
	if size <= 0 {
		size = DefaultQueue
	}
	if q.batch <= 0 {
		q.batch = DefaultBatch
	}
	q.batch = min(q.batch, size)
	if q.interval <= 0 {
		q.interval = DefaultInterval
	}
	q.ring = make([]sdktrace.ReadOnlySpan, size)
	q.base, q.cancel = context.WithCancel(context.Background())
	m.queued(func() float64 { return float64(q.waiting()) })
	go q.run()
	return q
}

// OnStart implements sdktrace.SpanProcessor: nothing to do.
func (q *queue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd implements sdktrace.SpanProcessor: it queues a sampled span, or
// drops it when the queue is full. It never blocks but on the ring's
// lock, which is held only to move spans in or out.
func (q *queue) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	q.mu.Lock()
	if q.n == len(q.ring) {
		q.mu.Unlock()
		q.m.dropped(dropQueueFull, 1)
		return
	}
	q.ring[(q.head+q.n)%len(q.ring)] = s
	q.n++
	full := q.n == q.batch
	q.mu.Unlock()
	if full {
		select {
		case q.ready <- struct{}{}:
		default: // signalled already
		}
	}
}

// waiting is the number of spans in the ring.
func (q *queue) waiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// take moves up to q.batch spans from the ring to batch, oldest first,
// when at least least are waiting.
func (q *queue) take(batch []sdktrace.ReadOnlySpan, least int) []sdktrace.ReadOnlySpan {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n < max(least, 1) {
		return batch
	}
	for range min(q.n, q.batch-len(batch)) {
		batch = append(batch, q.ring[q.head])
		q.ring[q.head] = nil
		q.head = (q.head + 1) % len(q.ring)
		q.n--
	}
	return batch
}

// ForceFlush implements sdktrace.SpanProcessor: it returns once every span
// queued before the call has been exported (or failed), or when ctx ends.
func (q *queue) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case q.flush <- ack:
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown implements sdktrace.SpanProcessor: it exports what is queued
// within ctx (what is left when ctx ends is dropped and counted), stops the
// goroutine and shuts the exporter down. The SDK calls it once.
func (q *queue) Shutdown(ctx context.Context) error {
	abort := context.AfterFunc(ctx, q.cancel) // ends an export in flight when ctx ends
	defer abort()
	select {
	case q.stop <- ctx:
	case <-q.done:
	}
	<-q.done
	q.cancel()
	return q.exp.Shutdown(ctx)
}

// run is the queue's goroutine: it sends the full batches when woken, and
// everything waiting an interval after its last export.
func (q *queue) run() {
	defer close(q.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, q.batch)
	timer := time.NewTimer(q.interval)
	defer timer.Stop()
	for {
		least := q.batch
		select {
		case <-q.ready:
		case <-timer.C:
			least = 1
		case ack := <-q.flush:
			q.drain(q.base, batch)
			close(ack)
			timer.Reset(q.interval)
			continue
		case ctx := <-q.stop:
			q.drain(ctx, batch)
			return
		}
		for batch = q.take(batch, least); len(batch) > 0; batch = q.take(batch, least) {
			batch = q.export(q.base, batch)
		}
		timer.Reset(q.interval)
	}
}

// drain exports everything waiting now, in batches, within ctx; once ctx
// has ended, the rest is dropped and counted.
func (q *queue) drain(ctx context.Context, batch []sdktrace.ReadOnlySpan) {
	for batch = q.take(batch, 1); len(batch) > 0; batch = q.take(batch, 1) {
		if ctx.Err() != nil {
			q.mu.Lock()
			lost := len(batch) + q.n
			clear(q.ring)
			q.head, q.n = 0, 0
			q.mu.Unlock()
			q.m.dropped(dropShutdown, lost)
			clear(batch)
			return
		}
		batch = q.export(ctx, batch)
	}
}

// export sends one batch, within the export timeout and ctx, and returns
// the batch emptied for reuse. The spans a collector rejected (a partial
// success) count as failed, the others as exported.
func (q *queue) export(ctx context.Context, batch []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	if len(batch) == 0 {
		return batch
	}
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	err := q.exp.ExportSpans(ctx, batch)
	cancel()
	lost := 0
	var pe *PartialError
	switch {
	case errors.As(err, &pe):
		lost = int(min(max(pe.Rejected, 0), int64(len(batch))))
	case err != nil:
		lost = len(batch)
	}
	if lost > 0 { // a partial success rejecting none is a warning only: nothing lost
		q.m.dropped(dropExportFailed, lost)
		q.failures.note(q.log, err, lost)
	}
	q.m.exported(len(batch) - lost)
	clear(batch)
	return batch[:0]
}

// failureLog logs export failures, at most one line a minute with the
// number of spans lost since the last line: a collector that is down must
// not flood the log.
type failureLog struct {
	last time.Time
	lost int
}

func (f *failureLog) note(log *zap.Logger, err error, spans int) {
	f.lost += spans
	if !f.last.IsZero() && time.Since(f.last) < time.Minute {
		return
	}
	log.Warn("tracing: spans could not be exported to the OTLP endpoint; requests are not affected, the spans are "+
		"dropped (payrails_proxy_tracing_spans_dropped_total); check tracing.otlp_endpoint and that the collector is up",
		zap.Int("spans_lost", f.lost), zap.Error(err))
	f.last, f.lost = time.Now(), 0
}

// Reasons a span is dropped, the dropped_total label.
const (
	dropQueueFull    = "queue_full"
	dropExportFailed = "export_failed"
	dropShutdown     = "shutdown"
)

// metrics count what became of the spans. A nil *metrics counts nothing.
type metrics struct {
	exportedTotal prometheus.Counter
	drops         map[string]prometheus.Counter // by reason, made once: a full queue drops at the request rate
	reg           prometheus.Registerer
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{reg: reg, drops: map[string]prometheus.Counter{},
		exportedTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "payrails_proxy_tracing_spans_exported_total",
			Help: "Spans sent to the OTLP endpoint.",
		}),
	}
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payrails_proxy_tracing_spans_dropped_total",
		Help: "Spans not sent, by reason: queue_full (the export queue was full; the request was not delayed), " +
			"export_failed, shutdown (not sent within timeouts.shutdown).",
	}, []string{"reason"})
	for _, r := range []string{dropQueueFull, dropExportFailed, dropShutdown} {
		m.drops[r] = dropped.WithLabelValues(r)
	}
	reg.MustRegister(m.exportedTotal, dropped)
	return m
}

// queued registers the queue's length as a gauge.
func (m *metrics) queued(f func() float64) {
	if m != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "payrails_proxy_tracing_queue_spans",
			Help: "Spans waiting in the export queue.",
		}, f))
	}
}

func (m *metrics) dropped(reason string, n int) {
	if m != nil {
		m.drops[reason].Add(float64(n))
	}
}

func (m *metrics) exported(n int) {
	if m != nil {
		m.exportedTotal.Add(float64(n))
	}
}
