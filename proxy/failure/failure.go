// Package failure is the one table of the proxy's own failures: each kind,
// the status it is answered with, whether it ends the client's connection,
// the X-Payrails-Proxy-Error header and the JSON body in Payrails' error
// shape. The inbound proxy writes these answers; the upstream client
// (proxy/upstream) returns its failures as these errors, so that both
// sides speak of a failure in one vocabulary.
package failure

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Kind names a failure made by the proxy itself. It is sent as
// "proxy.<kind>" in the JSON body and as the X-Payrails-Proxy-Error header,
// and used as a metrics label. Users' scripts match on these strings: never
// rename one.
type Kind string

// Failure kinds.
const (
	KindHostNotAllowed       Kind = "host_not_allowed"
	KindSourceNotAllowed     Kind = "source_not_allowed"
	KindProxyAuthRequired    Kind = "proxy_auth_required"
	KindConnectNotSupported  Kind = "connect_not_supported"
	KindNoDefaultUpstream    Kind = "no_default_upstream"
	KindBadRequest           Kind = "bad_request"
	KindNoCertificate        Kind = "no_certificate"
	KindUpstreamUnreachable  Kind = "upstream_unreachable"
	KindUpstreamTLS          Kind = "upstream_tls"
	KindCertificateRefused   Kind = "client_certificate_refused"
	KindClientKeyUnavailable Kind = "client_key_unavailable"
	KindUpstreamTimeout      Kind = "upstream_timeout"
	KindUpstreamError        Kind = "upstream_error"
	KindClientClosed         Kind = "client_closed"
	KindClientTimeout        Kind = "client_timeout"
	KindToken                Kind = "token"
	KindMethodNotAllowed     Kind = "method_not_allowed"
)

// StatusClientClosedRequest is nginx's and Caddy's code for a client that
// went away before the response: it is logged, never seen by the client.
const StatusClientClosedRequest = 499

// kindInfo is what the table says of a kind.
type kindInfo struct {
	status int
	// closes: the client's connection ends with the answer, because the
	// request's framing or body was refused or abandoned and its unread
	// bytes must never be taken for a next request.
	closes bool
}

// kinds is the one table of the proxy's failures.
var kinds = map[Kind]kindInfo{
	KindHostNotAllowed:       {status: http.StatusForbidden},
	KindSourceNotAllowed:     {status: http.StatusForbidden},
	KindProxyAuthRequired:    {status: http.StatusProxyAuthRequired},
	KindConnectNotSupported:  {status: http.StatusMethodNotAllowed},
	KindNoDefaultUpstream:    {status: http.StatusBadRequest},
	KindBadRequest:           {status: http.StatusBadRequest, closes: true},
	KindNoCertificate:        {status: http.StatusServiceUnavailable},
	KindUpstreamUnreachable:  {status: http.StatusBadGateway},
	KindUpstreamTLS:          {status: http.StatusBadGateway},
	KindCertificateRefused:   {status: http.StatusBadGateway},
	KindClientKeyUnavailable: {status: http.StatusBadGateway},
	KindUpstreamTimeout:      {status: http.StatusGatewayTimeout},
	KindUpstreamError:        {status: http.StatusBadGateway},
	KindClientClosed:         {status: StatusClientClosedRequest, closes: true},
	KindClientTimeout:        {status: http.StatusRequestTimeout, closes: true},
	KindToken:                {status: http.StatusBadGateway},
	KindMethodNotAllowed:     {status: http.StatusMethodNotAllowed},
}

// Status returns the HTTP status for the kind; 502 for an unknown kind.
func (k Kind) Status() int {
	if i, ok := kinds[k]; ok {
		return i.status
	}
	return http.StatusBadGateway
}

// ClosesConnection reports whether an answer of kind k ends the client's
// connection: the request's framing or body was refused or abandoned, and
// its unread bytes must never be taken for a next request.
func (k Kind) ClosesConnection() bool { return kinds[k].closes }

// HeaderError carries the kind on every response the proxy makes itself.
const HeaderError = "X-Payrails-Proxy-Error"

// ownPrefix starts the headers the proxy sets on answers: HeaderError,
// X-Payrails-Proxy-Attempts.
const ownPrefix = "X-Payrails-Proxy-"

// StripOwnHeaders deletes from an upstream's answer the headers only the
// proxy sets (X-Payrails-Proxy-*): scripts match on them, and one that an
// upstream (another proxy in front of the API) sent must never pass for
// this proxy's (as smokescreen strips its own header from upstream
// answers).
func StripOwnHeaders(h http.Header) {
	for k := range h {
		if len(k) > len(ownPrefix) && strings.EqualFold(k[:len(ownPrefix)], ownPrefix) {
			delete(h, k)
		}
	}
}

// Error is a failure of the proxy, with a detail written for the person who
// reads the response: what happened and what to do.
type Error struct {
	Kind   Kind
	Detail string
	Err    error // the cause, if any; logged, never sent
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Kind, e.Detail, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Kind, e.Detail)
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an Error of kind k caused by err (nil: none), its detail
// formatted for the person who reads the answer.
func New(k Kind, err error, format string, args ...any) *Error {
	return &Error{Kind: k, Detail: fmt.Sprintf(format, args...), Err: err}
}

// errorBody is Payrails' error shape: {"errors":[{"id","code","detail"}]}.
type errorBody struct {
	Errors []errorItem `json:"errors"`
}

type errorItem struct {
	ID     string `json:"id,omitempty"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

func (e *Error) body(requestID string) []byte {
	b, _ := json.Marshal(errorBody{Errors: []errorItem{{ID: requestID, Code: "proxy." + string(e.Kind), Detail: e.Detail}}})
	return append(b, '\n')
}

// header returns the response headers of an error response.
func (e *Error) header(bodyLen int) http.Header {
	h := http.Header{
		"Content-Type":           {"application/json"},
		"Content-Length":         {strconv.Itoa(bodyLen)},
		"Cache-Control":          {"no-store"},
		"X-Content-Type-Options": {"nosniff"},
		HeaderError:              {string(e.Kind)},
	}
	switch e.Kind {
	case KindProxyAuthRequired:
		h.Set("Proxy-Authenticate", `Basic realm="payrails-mtls-proxy"`)
	case KindMethodNotAllowed:
		h.Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS") // RFC 9110 §15.5.6
	}
	return h
}

// Write sends e as the response: the very response that Response builds
// for goproxy, so that a refusal at admission and an upstream failure
// reach the client alike.
func (e *Error) Write(w http.ResponseWriter, requestID string) {
	resp := e.Response(nil, requestID)
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// Response returns e as an *http.Response, for goproxy's response hooks.
func (e *Error) Response(req *http.Request, requestID string) *http.Response {
	body := e.body(requestID)
	status := e.Kind.Status()
	return &http.Response{
		Status:        strconv.Itoa(status) + " " + http.StatusText(status),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        e.header(len(body)),
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}
