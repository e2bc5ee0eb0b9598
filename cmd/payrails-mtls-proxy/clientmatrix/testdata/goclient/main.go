// Command goclient is the client matrix's Go net/http client: the proxy from
// HTTP_PROXY / HTTPS_PROXY (http.ProxyFromEnvironment, the default
// transport's), trust in the local CA from SSL_CERT_FILE. The plan comes in
// MATRIX_PLAN (see matrix_test.go); it prints one JSON line per case.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

type plan struct {
	Upload, JSON, Idem string
	Cases              []struct {
		Name string
		URLs []string
	}
}

func main() {
	var p plan
	if err := json.Unmarshal([]byte(os.Getenv("MATRIX_PLAN")), &p); err != nil {
		panic(err)
	}
	upload, err := os.ReadFile(p.Upload)
	if err != nil {
		panic(err)
	}
	c := &http.Client{Timeout: 30 * time.Second} // http.DefaultTransport: ProxyFromEnvironment, keep-alive, gzip
	enc := json.NewEncoder(os.Stdout)
	for _, cs := range p.Cases {
		res := map[string]any{"case": cs.Name}
		var resp *http.Response
		var body []byte
		for _, u := range cs.URLs {
			var req *http.Request
			switch cs.Name {
			case "post":
				req, _ = http.NewRequest("POST", u, strings.NewReader(p.JSON))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Idempotency-Key", p.Idem)
			case "upload":
				req, _ = http.NewRequest("POST", u, bytes.NewReader(upload)) // a known length: Content-Length
				req.Header.Set("Content-Type", "application/octet-stream")
			case "chunked":
				f, _ := os.Open(p.Upload) // an unknown length: chunked
				defer f.Close()
				req, _ = http.NewRequest("POST", u, io.NopCloser(f))
				req.Header.Set("Content-Type", "application/octet-stream")
			default:
				req, _ = http.NewRequest("GET", u, nil) // the transport asks for gzip and decodes it itself
			}
			if resp, err = c.Do(req); err != nil {
				break
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err != nil {
			res["error"] = err.Error()
		} else {
			sum := sha256.Sum256(body)
			res["status"], res["body_sha256"] = resp.StatusCode, hex.EncodeToString(sum[:])
			res["proxy_error"], res["content_encoding"] = resp.Header.Get("X-Payrails-Proxy-Error"), resp.Header.Get("Content-Encoding")
		}
		err = nil
		enc.Encode(res)
	}
}
