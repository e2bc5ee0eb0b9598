package answer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"html"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strings"
)

// Telling a refusal of the client certificate apart from everything else.
// A server refuses the certificate with a TLS alert (certificateAlerts) or,
// when an edge in front of the API ends TLS itself, with an HTML error
// page: nginx answers 400 "The SSL certificate error" or "No required SSL
// certificate was sent" (its internal 495 and 496). Such a page means the
// request never reached the API. A JSON answer is the API's and is never
// reinterpreted.

// SniffSize is how much of a body is read to judge it: enough for an
// edge's error page or the start of Payrails' JSON error.
const SniffSize = 4 << 10

var titleRe = regexp.MustCompile(`(?is)<title[^>]*>(.*?)</title>`)

// EdgeRefusal reports whether resp is an edge's refusal of the client
// certificate, and the page's title. It reads at most SniffSize bytes of
// the body, and gives resp a body that still yields every byte.
func EdgeRefusal(resp *http.Response) (title string, refused bool) {
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusForbidden, 495, 496:
	default:
		return "", false
	}
	if !IsHTML(resp.Header.Get("Content-Type")) {
		return "", false
	}
	head := Peek(resp, SniffSize)
	if m := titleRe.FindSubmatch(head); m != nil {
		title = strings.Join(strings.Fields(html.UnescapeString(string(m[1]))), " ")
	}
	return title, resp.StatusCode == 495 || resp.StatusCode == 496 || strings.Contains(strings.ToLower(title), "certificate")
}

// IsHTML reports a text/html Content-Type.
func IsHTML(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "text/html"
}

// IsJSON reports a JSON Content-Type (application/json, or any +json).
func IsJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// Peek returns up to n bytes of resp's body and replaces the body with
// one that yields them again, followed by the rest.
func Peek(resp *http.Response, n int) []byte {
	if resp.Body == nil || resp.Body == http.NoBody {
		return nil
	}
	br := bufio.NewReaderSize(resp.Body, n)
	head, _ := br.Peek(n)
	resp.Body = &peekedBody{Reader: br, Closer: resp.Body}
	return head
}

type peekedBody struct {
	*bufio.Reader
	io.Closer
}

// PayrailsError is the first entry of Payrails' {"errors":[...]} shape.
type PayrailsError struct {
	ID   string `json:"id"`
	Code string `json:"code"`
}

// ParsePayrailsError reads the id and code of the first error from the
// start of a Payrails error body, which may be cut short.
func ParsePayrailsError(head []byte) (PayrailsError, bool) {
	var full struct {
		Errors []PayrailsError `json:"errors"`
	}
	if json.Unmarshal(head, &full) == nil {
		if len(full.Errors) > 0 {
			return full.Errors[0], true
		}
		return PayrailsError{}, false
	}
	return scanPayrailsError(head)
}

// scanPayrailsError walks the tokens of a truncated body: {"errors":[{...
func scanPayrailsError(head []byte) (PayrailsError, bool) {
	dec := json.NewDecoder(bytes.NewReader(head))
	want := []json.Token{json.Delim('{'), "errors", json.Delim('['), json.Delim('{')}
	for depth := 0; depth < len(want); {
		tok, err := dec.Token()
		if err != nil {
			return PayrailsError{}, false
		}
		switch {
		case tok == want[depth]:
			depth++
		case depth == 1: // another key of the top object: skip its value
			if err := skipValue(dec); err != nil {
				return PayrailsError{}, false
			}
		default:
			return PayrailsError{}, false
		}
	}
	var e PayrailsError
	for {
		key, err := dec.Token()
		if err != nil || key == json.Delim('}') {
			return e, e.Code != "" || e.ID != ""
		}
		val, err := dec.Token()
		if err != nil {
			return e, e.Code != "" || e.ID != ""
		}
		s, isString := val.(string)
		switch {
		case key == "id" && isString:
			e.ID = s
		case key == "code" && isString:
			e.Code = s
		case val == json.Delim('{') || val == json.Delim('['):
			if skipNested(dec) != nil {
				return e, e.Code != "" || e.ID != ""
			}
		}
	}
}

func skipValue(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == json.Delim('{') || tok == json.Delim('[') {
		return skipNested(dec)
	}
	return nil
}

// skipNested skips to the end of the object or array just opened.
func skipNested(dec *json.Decoder) error {
	for depth := 1; depth > 0; {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

// Retryable reports an answer a keyed request may be sent again for:
// Payrails' 503 service.unavailable and 504 request.timeout (its error
// catalogue says to retry them with the same key), and an edge's 502, 503
// or 504 page (the request did not reach the API, or the API will
// deduplicate it).
func Retryable(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
	default:
		return false
	}
	ct := resp.Header.Get("Content-Type")
	if IsHTML(ct) {
		return true
	}
	if !IsJSON(ct) || resp.StatusCode == http.StatusBadGateway {
		return false
	}
	pe, ok := ParsePayrailsError(Peek(resp, SniffSize))
	return ok && (pe.Code == "service.unavailable" || pe.Code == "request.timeout")
}
