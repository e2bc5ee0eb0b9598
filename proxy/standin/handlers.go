package standin

import (
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Echo is the JSON the echo endpoint answers with.
type Echo struct {
	Method     string              `json:"method"`
	Path       string              `json:"path"`
	Query      string              `json:"query,omitempty"`
	Host       string              `json:"host"`
	Proto      string              `json:"proto"`
	Header     map[string][]string `json:"header"`
	Trailer    map[string][]string `json:"trailer,omitempty"`
	BodyBytes  int64               `json:"body_bytes"`
	BodySHA256 string              `json:"body_sha256"`
	Chunked    bool                `json:"chunked"` // the request body came with Transfer-Encoding: chunked
	Conn       string              `json:"conn"`    // the client's address: equal values mean the same connection
	Client     ClientCert          `json:"client_certificate"`
	TLS        TLSInfo             `json:"tls"`
}

// ClientCert describes the certificate the caller presented.
type ClientCert struct {
	Subject     string `json:"subject"`
	Issuer      string `json:"issuer"`
	Serial      string `json:"serial"`
	Fingerprint string `json:"fingerprint_sha256"`
}

// TLSInfo describes the caller's TLS connection.
type TLSInfo struct {
	Version  string `json:"version"`
	Resumed  bool   `json:"resumed"`
	Protocol string `json:"alpn"`
}

// Token is Payrails' token response.
type Token struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /auth/token/{id}", s.token)
	mux.HandleFunc("GET /bytes/{n}", bytesHandler)
	mux.HandleFunc("GET /cut/{n}", cutHandler)
	mux.HandleFunc("GET /delay/{d}", delayHandler)
	mux.HandleFunc("GET /gzip", gzipHandler)
	mux.HandleFunc("GET /header-bytes/{n}", headerBytesHandler)
	mux.HandleFunc("GET /trailers", trailersHandler)
	mux.HandleFunc("GET /early-hints", earlyHintsHandler)
	mux.HandleFunc("/status/{code}", statusHandler)
	mux.HandleFunc("/", s.echo)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if s.opts.RefusalPage && r.TLS != nil && len(r.TLS.PeerCertificates) == 0 {
			refusalPage(w)
			return
		}
		if s.requireToken(w, r) {
			mux.ServeHTTP(w, r)
		}
	})
}

// NoCertificatePage is the title of nginx's answer to a request without a
// client certificate where one is required (ssl_verify_client).
const NoCertificatePage = "400 No required SSL certificate was sent"

// refusalPage answers as nginx does a request without the client
// certificate it requires.
func refusalPage(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html")
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusBadRequest)
	fmt.Fprintf(w, "<html>\r\n<head><title>%[1]s</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n"+
		"<center>No required SSL certificate was sent</center>\r\n<hr><center>payrails-mtls-proxy stand-in</center>\r\n</body>\r\n</html>\r\n",
		NoCertificatePage)
}

func (s *Server) echo(w http.ResponseWriter, r *http.Request) {
	if key := r.Header.Get("X-Idempotency-Key"); key != "" && s.opts.Keys != nil {
		s.opts.Keys.add(key)
	}
	echoHandler(w, r)
}

func echoHandler(w http.ResponseWriter, r *http.Request) {
	if d, err := time.ParseDuration(r.URL.Query().Get("delay")); err == nil {
		select { // ?delay=200ms holds the answer, e.g. to force a second connection
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "body", "Reading the request body failed: "+err.Error())
		return
	}
	e := Echo{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Host: r.Host, Proto: r.Proto,
		Header: r.Header, Trailer: r.Trailer, BodyBytes: n, BodySHA256: hex.EncodeToString(h.Sum(nil)),
		Chunked: len(r.TransferEncoding) > 0, Conn: fmt.Sprint(r.Context().Value(connKey{})),
	}
	if cs := r.TLS; cs != nil {
		e.TLS = TLSInfo{Version: tls.VersionName(cs.Version), Resumed: cs.DidResume, Protocol: cs.NegotiatedProtocol}
		if len(cs.PeerCertificates) > 0 {
			c := cs.PeerCertificates[0]
			sum := sha256.Sum256(c.Raw)
			e.Client = ClientCert{Subject: c.Subject.String(), Issuer: c.Issuer.String(),
				Serial: fmt.Sprintf("%X", c.SerialNumber.Bytes()), Fingerprint: hex.EncodeToString(sum[:])}
		}
	}
	writeJSON(w, http.StatusOK, e)
}

// Pattern is the byte at offset i of /bytes and /cut bodies, so that a
// receiver can check every byte.
func Pattern(i int64) byte { return byte('a' + i%26) }

// earlyHintsHandler sends a 103 Early Hints informational response before
// its 200.
func earlyHintsHandler(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Link", "</v1/config>; rel=preload")
	w.WriteHeader(http.StatusEarlyHints)
	writeJSON(w, http.StatusOK, map[string]bool{"hinted": true})
}

// trailersHandler answers a chunked body followed by an announced
// X-Checksum trailer and an unannounced X-Late one (http.TrailerPrefix).
func trailersHandler(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Trailer", "X-Checksum")
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "body before the trailers\n")
	w.(http.Flusher).Flush()
	w.Header().Set("X-Checksum", "sha256=abc")
	w.Header().Set(http.TrailerPrefix+"X-Late", "late")
}

// headerBytesHandler answers with an X-Filler header of n bytes, to test
// a client's limit on response headers.
func headerBytesHandler(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 0 || n > 64<<20 {
		writeAPIError(w, http.StatusBadRequest, "n", "n must be an integer from 0 to 64 MiB")
		return
	}
	w.Header().Set("X-Filler", strings.Repeat("f", n))
	w.WriteHeader(http.StatusNoContent)
}

func bytesHandler(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
	if err != nil || n < 0 {
		writeAPIError(w, http.StatusBadRequest, "n", "n must be a non-negative integer")
		return
	}
	if r.URL.Query().Get("chunked") == "" {
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	writePattern(w, n)
}

// patternBlock is Pattern(0..len-1); its length is a multiple of 26, so it
// also holds the pattern from any offset that is a multiple of its length.
var patternBlock = func() []byte {
	b := make([]byte, 26*1260) // 32,760 bytes
	for i := range b {
		b[i] = Pattern(int64(i))
	}
	return b
}()

func writePattern(w io.Writer, n int64) {
	for off := int64(0); off < n; {
		m := min(int64(len(patternBlock)), n-off)
		if _, err := w.Write(patternBlock[:m]); err != nil {
			return
		}
		off += m
	}
}

func cutHandler(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
	if err != nil || n < 0 {
		writeAPIError(w, http.StatusBadRequest, "n", "n must be a non-negative integer")
		return
	}
	if l := r.URL.Query().Get("length"); l != "" {
		w.Header().Set("Content-Length", l) // declare more than will come
	}
	writePattern(w, n)
	http.NewResponseController(w).Flush()
	panic(http.ErrAbortHandler) // break the connection without ending the body
}

func delayHandler(w http.ResponseWriter, r *http.Request) {
	d, err := time.ParseDuration(r.PathValue("d"))
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "d", "d must be a Go duration such as 2s")
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		writeJSON(w, http.StatusOK, map[string]string{"waited": d.String()})
	case <-r.Context().Done():
	}
}

func gzipHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Encoding", "gzip")
	zw := gzip.NewWriter(w)
	_, _ = io.WriteString(zw, `{"compressed":true}`)
	_ = zw.Close()
}

func statusHandler(w http.ResponseWriter, r *http.Request) {
	code, err := strconv.Atoi(r.PathValue("code"))
	if err != nil || code < 200 || code > 599 {
		writeAPIError(w, http.StatusBadRequest, "code", "code must be 200..599")
		return
	}
	writeAPIError(w, code, "status", http.StatusText(code))
}

// writeAPIError answers in Payrails' error shape.
func writeAPIError(w http.ResponseWriter, status int, code, detail string) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	writeJSON(w, status, map[string]any{"errors": []map[string]string{{
		"id": hex.EncodeToString(b), "code": code, "detail": detail, "reason": http.StatusText(status),
		"docUrl": "https://docs.payrails.com/",
	}}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }
