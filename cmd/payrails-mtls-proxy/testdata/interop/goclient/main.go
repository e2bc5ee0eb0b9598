// Command goclient is the interop client for Go's net/http with
// ProxyFromEnvironment (http.DefaultTransport), as Go services call.
// Usage: goclient BASE_URL NAME. Prints one JSON line per operation.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

const (
	upload   = 1<<20 + 123
	download = 10 << 20
)

type pattern struct{ off, n int }

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	m := min(len(b), p.n-p.off)
	for i := range m {
		b[i] = byte('a' + (p.off+i)%26)
	}
	p.off += m
	return m, nil
}

func main() {
	base, name := os.Args[1], os.Args[2]
	c := &http.Client{} // http.DefaultTransport: ProxyFromEnvironment
	do := func(op, method, path string, body io.Reader, length int64, hdr map[string]string) {
		req, err := http.NewRequest(method, base+path, body)
		if err != nil {
			fail(err)
		}
		req.ContentLength = length
		req.Header.Set("X-Interop", name)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			fail(err)
		}
		defer resp.Body.Close()
		if op == "download" {
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			if err != nil {
				fail(err)
			}
			emit(map[string]any{"op": op, "status": resp.StatusCode, "bytes": n, "sha256": hex.EncodeToString(h.Sum(nil))})
			return
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			fail(err)
		}
		emit(map[string]any{"op": op, "status": resp.StatusCode, "body": string(b)})
	}
	do("get", http.MethodGet, "/v1/echo?q=1", nil, 0, nil)
	payment := `{"amount":1000,"currency":"EUR"}`
	do("post", http.MethodPost, "/v1/payments", strings.NewReader(payment), int64(len(payment)),
		map[string]string{"Content-Type": "application/json", "X-Idempotency-Key": "key-" + name})
	do("upload", http.MethodPost, "/v1/upload", &pattern{n: upload}, -1, map[string]string{"Content-Type": "application/octet-stream"})
	do("download", http.MethodGet, fmt.Sprintf("/bytes/%d", download), nil, 0, nil)
}

func emit(v any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "goclient:", err)
	os.Exit(1)
}
