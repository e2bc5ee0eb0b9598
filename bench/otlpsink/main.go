// Command otlpsink is the cheapest OTLP/HTTP receiver that can say how
// many spans it got, for bench/tracing.sh: it takes every export
// (protobuf, gzip or not), counts its spans without decoding them further
// and answers 200, so that measuring what tracing costs the proxy is not
// measuring a collector. A real OpenTelemetry Collector sharing the
// machine's other CPU with wrk and the stand-in slowed them enough to move
// the proxy's CPU per request by itself (docs/performance.md). The
// Collector stays where correctness is checked: cmd's TestTracingCollector.
//
//	otlpsink -listen 127.0.0.1:4318
//
// POST /v1/traces takes an export; GET /spans answers the spans counted
// so far, and the exports it could not read.
package main

import (
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync/atomic"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "`HOST:PORT` to listen on; the address is printed on the first line")
	flag.Parse()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("otlpsink: %v", err)
	}
	fmt.Println(ln.Addr())
	var s sink
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", s.export)
	mux.HandleFunc("GET /spans", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%d %d\n", s.spans.Load(), s.bad.Load())
	})
	if err := http.Serve(ln, mux); err != nil {
		fmt.Fprintf(os.Stderr, "otlpsink: %v\n", err)
		os.Exit(1)
	}
}

type sink struct {
	spans, bad atomic.Int64
}

func (s *sink) export(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			s.reject(w, err)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(io.LimitReader(body, 64<<20))
	if err != nil {
		s.reject(w, err)
		return
	}
	n, err := countSpans(b)
	if err != nil {
		s.reject(w, err)
		return
	}
	s.spans.Add(int64(n))
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK) // an empty ExportTraceServiceResponse: everything accepted
}

func (s *sink) reject(w http.ResponseWriter, err error) {
	s.bad.Add(1)
	http.Error(w, err.Error(), http.StatusBadRequest)
}

// countSpans counts the spans of an ExportTraceServiceRequest:
// resource_spans (1) → scope_spans (2) → spans (2).
func countSpans(b []byte) (int, error) {
	n := 0
	err := fields(b, 1, func(rs []byte) error {
		return fields(rs, 2, func(ss []byte) error {
			return fields(ss, 2, func([]byte) error { n++; return nil })
		})
	})
	return n, err
}

var errMalformed = errors.New("malformed protobuf")

// fields calls f with the bytes of each length-delimited field number num
// of the message b, skipping the others.
func fields(b []byte, num uint64, f func([]byte) error) error {
	for len(b) > 0 {
		key, k := uvarint(b)
		if k <= 0 {
			return errMalformed
		}
		b = b[k:]
		switch key & 7 {
		case 0: // varint
			_, k := uvarint(b)
			if k <= 0 {
				return errMalformed
			}
			b = b[k:]
		case 1: // fixed64
			if len(b) < 8 {
				return errMalformed
			}
			b = b[8:]
		case 5: // fixed32
			if len(b) < 4 {
				return errMalformed
			}
			b = b[4:]
		case 2: // length-delimited
			l, k := uvarint(b)
			if k <= 0 || uint64(len(b)-k) < l {
				return errMalformed
			}
			v := b[k : k+int(l)]
			b = b[k+int(l):]
			if key>>3 == num {
				if err := f(v); err != nil {
					return err
				}
			}
		default:
			return errMalformed
		}
	}
	return nil
}

// uvarint decodes a varint: its value and length, or a length <= 0.
func uvarint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}
