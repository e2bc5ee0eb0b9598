package proxy

// goproxyKinds names each warning goproxy v1.9.3 can print (its Warnf
// formats, without the "[%03d] WARN: " prefix and the newline it adds).
// goproxyLogger logs the name, never the line: the format is goproxy's
// constant, but its arguments are request data (whole URLs with their
// query strings, raw header lines of a malformed request, hosts). A format
// missing here (a newer goproxy) is logged as goproxyUnknownKind;
// TestGoproxyKindsCoverItsWarnings reads goproxy's source to keep the table
// complete.
var goproxyKinds = map[string]string{
	"Cannot read request from mitm'd client %v %v":                                    "read_request",
	"Cannot parse URL %s: %v":                                                         "parse_url",
	"Illegal URL %s":                                                                  "illegal_url",
	"Cannot handshake client %v %v":                                                   "tls_handshake",
	"Cannot read response from mitm'd server %v":                                      "read_response",
	"Cannot write response header from mitm'd client: %v":                             "write_response_header",
	"Cannot flush response header from mitm'd client: %v":                             "flush_response_header",
	"Cannot write response from mitm'd client: %v":                                    "write_response",
	"Cannot read response %s":                                                         "read_response_body",
	"Can't close response body %v":                                                    "close_response_body",
	"Unable to use Websocket connection":                                              "websocket",
	"Hijack error: %v":                                                                "websocket_hijack",
	"Cannot hijack connection: %v":                                                    "hijack",
	"Cannot write response that reject http CONNECT: %v":                              "connect_reject",
	"ConnectProxyAuthHijack is not supported when the proxy is served over HTTP/2":    "connect_auth_h2",
	"CONNECT: server does not support hijacking and request is not HTTP/2 (proto=%s)": "connect_no_hijack",
	"Error dialing to %s: %s":                                                         "dial",
	"Error responding to client: %s":                                                  "respond",
	"Error closing client connection: %s":                                             "close_client",
	"Error copying to client: %s":                                                     "copy",
	"Cannot sign host certificate with provided CA: %s":                               "sign",
	"HTTP/2 MITM: upstream RoundTrip failed: %v":                                      "h2_round_trip",
	"HTTP/2 MITM: error writing response body: %v":                                    "h2_write_body",
	"HTTP/2 MITM: error reading response body: %v":                                    "h2_read_body",
}

// fieldGoproxyKind is the field of goproxy's lines that names their kind.
const fieldGoproxyKind = "kind"

// goproxyUnknownKind is the kind of a line whose format is not in
// goproxyKinds.
const goproxyUnknownKind = "unknown"

// goproxyKind names the line goproxy prints with format.
func goproxyKind(format string) string {
	if k, ok := goproxyKinds[format]; ok {
		return k
	}
	return goproxyUnknownKind
}
