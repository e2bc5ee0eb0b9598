package proxy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/standin"
)

// patternReader yields n bytes of standin.Pattern without holding them.
type patternReader struct{ off, n int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	m := min(int64(len(p)), r.n-r.off)
	for i := range m {
		p[i] = standin.Pattern(r.off + i)
	}
	r.off += m
	return int(m), nil
}

// heapPeak samples the heap in use until stopped. Client, proxy and
// upstream all live in this process, so a body buffered anywhere shows.
type heapPeak struct {
	peak atomic.Uint64
	stop chan struct{}
	wg   sync.WaitGroup
}

func watchHeap() *heapPeak {
	h := &heapPeak{stop: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > h.peak.Load() {
				h.peak.Store(ms.HeapInuse)
			}
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

func (h *heapPeak) done() uint64 {
	close(h.stop)
	h.wg.Wait()
	return h.peak.Load()
}

// TestLargeBodiesStream sends a large chunked upload and a large download
// through the proxy and checks every byte, with a heap that stays far below
// the body size: bodies are streamed, never buffered.
func TestLargeBodiesStream(t *testing.T) {
	const size = 256 << 20
	const heapLimit = 64 << 20
	if testing.Short() {
		t.Skip("moves 512 MiB through TLS")
	}
	e, _, _ := simpleEnv(t)
	c := e.forwardClient(t)
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	h := watchHeap()

	req, _ := http.NewRequest(http.MethodPost, "http://"+hostA+"/upload", &patternReader{n: size})
	req.ContentLength = -1 // chunked, as a streaming client sends it
	resp, body := do(t, c, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("upload: status %d: %s", resp.StatusCode, body)
	}
	echo := decodeEcho(t, body)
	sum := sha256.New()
	_, _ = io.Copy(sum, &patternReader{n: size})
	if echo.BodyBytes != size || echo.BodySHA256 != hex.EncodeToString(sum.Sum(nil)) {
		t.Errorf("upstream received %d bytes (sha %s), want %d intact", echo.BodyBytes, echo.BodySHA256, size)
	}

	dresp, err := c.Get(fmt.Sprintf("http://%s/bytes/%d", hostA, size))
	if err != nil {
		t.Fatal(err)
	}
	defer dresp.Body.Close()
	if dresp.ContentLength != size {
		t.Errorf("Content-Length %d, want %d passed through", dresp.ContentLength, size)
	}
	n, err := compareWithPattern(dresp.Body)
	if err != nil || n != size {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	peak := h.done()
	grew := int64(peak) - int64(base.HeapInuse)
	t.Logf("heap in use peaked %.1f MiB above its %.1f MiB start while moving 2 x %d MiB",
		float64(grew)/(1<<20), float64(base.HeapInuse)/(1<<20), size>>20)
	if grew > heapLimit {
		t.Errorf("heap grew by %d MiB (limit %d MiB): a body is being buffered", grew>>20, heapLimit>>20)
	}
}

func compareWithPattern(r io.Reader) (int64, error) {
	buf := make([]byte, 64<<10)
	var off int64
	for {
		n, err := r.Read(buf)
		for i := range n {
			if buf[i] != standin.Pattern(off+int64(i)) {
				return off, fmt.Errorf("byte %d differs", off+int64(i))
			}
		}
		off += int64(n)
		if err == io.EOF {
			return off, nil
		}
		if err != nil {
			return off, err
		}
	}
}

// TestRequestLogLine: one line per request with DESIGN.md's fields and none
// of the secrets the request carried.
func TestRequestLogLine(t *testing.T) {
	e, ps, _ := simpleEnv(t)
	secrets := []string{"sk_live_apikey", "bearer-token-value", "session=cookie-value", "query-secret", "Basic dXNlcjpwYXNz"}
	req, _ := http.NewRequest(http.MethodPost, "http://"+hostA+"/v1/payments?token=query-secret",
		strings.NewReader(`{"card":"4111111111111111"}`))
	req.Header.Set("X-Api-Key", "sk_live_apikey")
	req.Header.Set("Authorization", "Bearer bearer-token-value")
	req.Header.Set("Cookie", "session=cookie-value")
	req.Header.Set("Proxy-Authorization", "Basic dXNlcjpwYXNz")
	resp, body := do(t, e.forwardClient(t), req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	lines := e.waitLogLines(t, "request", 1)
	f := lines[0].ContextMap()
	want := map[string]any{"method": "POST", "mode": "forward", "upstream": "live", "host": hostA,
		"path": "/v1/payments", "status": int64(200), "serial": fmt.Sprintf("%X", ps.client.Cert.SerialNumber.Bytes())}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("log field %s = %v (%T), want %v", k, f[k], f[k], v)
		}
	}
	for _, k := range []string{"id", "bytes", "duration", "client"} {
		if _, ok := f[k]; !ok {
			t.Errorf("log line lacks %s", k)
		}
	}
	for _, entry := range e.logs.All() {
		line := fmt.Sprint(entry.Message, entry.ContextMap())
		for _, s := range append(secrets, "4111111111111111") {
			if strings.Contains(line, s) {
				t.Errorf("log line %q contains the secret %q", line, s)
			}
		}
	}
}
