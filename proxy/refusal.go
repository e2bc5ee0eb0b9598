package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

// sniffSize is how much of a body is read to judge it: enough for an
// edge's error page or the start of Payrails' JSON error.
const sniffSize = 4 << 10

var titleRe = regexp.MustCompile(`(?is)<title[^>]*>(.*?)</title>`)

// edgeRefusal reports whether resp is an edge's refusal of the client
// certificate, and the page's title. It reads at most sniffSize bytes of
// the body, and gives resp a body that still yields every byte.
func edgeRefusal(resp *http.Response) (title string, refused bool) {
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusForbidden, 495, 496:
	default:
		return "", false
	}
	if !isHTML(resp.Header.Get("Content-Type")) {
		return "", false
	}
	head := peekBody(resp, sniffSize)
	if m := titleRe.FindSubmatch(head); m != nil {
		title = strings.Join(strings.Fields(html.UnescapeString(string(m[1]))), " ")
	}
	return title, resp.StatusCode == 495 || resp.StatusCode == 496 || strings.Contains(strings.ToLower(title), "certificate")
}

func isHTML(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "text/html"
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// peekBody returns up to n bytes of resp's body and replaces the body with
// one that yields them again, followed by the rest.
func peekBody(resp *http.Response, n int) []byte {
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

// payrailsError is the first entry of Payrails' {"errors":[...]} shape.
type payrailsError struct {
	ID   string `json:"id"`
	Code string `json:"code"`
}

// parsePayrailsError reads the id and code of the first error from the
// start of a Payrails error body, which may be cut short.
func parsePayrailsError(head []byte) (payrailsError, bool) {
	var full struct {
		Errors []payrailsError `json:"errors"`
	}
	if json.Unmarshal(head, &full) == nil {
		if len(full.Errors) > 0 {
			return full.Errors[0], true
		}
		return payrailsError{}, false
	}
	return scanPayrailsError(head)
}

// scanPayrailsError walks the tokens of a truncated body: {"errors":[{...
func scanPayrailsError(head []byte) (payrailsError, bool) {
	dec := json.NewDecoder(bytes.NewReader(head))
	want := []json.Token{json.Delim('{'), "errors", json.Delim('['), json.Delim('{')}
	for depth := 0; depth < len(want); {
		tok, err := dec.Token()
		if err != nil {
			return payrailsError{}, false
		}
		switch {
		case tok == want[depth]:
			depth++
		case depth == 1: // another key of the top object: skip its value
			if err := skipValue(dec); err != nil {
				return payrailsError{}, false
			}
		default:
			return payrailsError{}, false
		}
	}
	var e payrailsError
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

// verifyWith asks the upstream whether it accepts g's certificate: one
// HEAD verify_path request through g, whose connection stays in g's pool,
// within timeouts.tls_handshake. An unexplained failure is explained by
// the generation's certificate check; a 4xx HTML answer to HEAD (which has
// no body to read the page's title from) is asked again with GET.
func (u *Upstream) verifyWith(ctx context.Context, g *generation) (VerifyResult, string) {
	ctx, cancel := context.WithTimeout(ctx, u.timeouts.TLSHandshake)
	defer cancel()
	res, reason, html := u.verifyRequest(ctx, g, http.MethodHead)
	if html {
		res, reason, _ = u.verifyRequest(ctx, g, http.MethodGet)
	}
	return res, reason
}

// verifyRequest sends one verification request; html reports a 4xx HTML
// answer without a body to judge.
func (u *Upstream) verifyRequest(ctx context.Context, g *generation, method string) (res VerifyResult, reason string, html bool) {
	req, err := http.NewRequestWithContext(ctx, method, u.baseURL().String()+u.verifyPath, nil)
	if err != nil {
		return VerifyUnknown, err.Error(), false
	}
	req.Header.Set("User-Agent", "payrails-mtls-proxy (certificate verification)")
	req.Header.Set("Accept", "application/json")
	resp, err := g.RoundTrip(req)
	if err != nil {
		res, reason := u.verifyFailure(ctx, g, err)
		return res, reason, false
	}
	defer resp.Body.Close()
	title, refused := edgeRefusal(resp)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case refused:
		return VerifyRefused, "the edge answered " + resp.Status + ` "` + title + `"`, false
	case method == http.MethodHead && resp.StatusCode >= 400 && resp.StatusCode < 500 && isHTML(resp.Header.Get("Content-Type")):
		return VerifyAccepted, "", true
	}
	return VerifyAccepted, "", false
}

// verifyFailure judges a verification request that got no answer.
func (u *Upstream) verifyFailure(ctx context.Context, g *generation, err error) (VerifyResult, string) {
	if code, text, ok := serverAlert(err); ok {
		if _, isCert := certificateAlerts[code]; isCert {
			return VerifyRefused, "TLS alert " + text
		}
	}
	var de *dialError
	var hs *handshakeError
	if errors.As(err, &de) || errors.As(err, &hs) || isTimeout(err) || ctx.Err() != nil {
		return VerifyUnknown, err.Error()
	}
	if r := u.refusal(ctx, g); r != nil {
		return VerifyRefused, "TLS alert " + r.reason
	}
	return VerifyUnknown, err.Error()
}
