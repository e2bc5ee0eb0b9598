package answer

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// FuzzPayrailsError: whatever an error answer's body holds, reading its
// code and id never panics; on a whole body in Payrails' shape it agrees
// with encoding/json; and on any cut of such a body it names nothing the
// whole body does not say (the log line reads the first 4 KiB as they
// stream, so bodies are often cut).
func FuzzPayrailsError(f *testing.F) {
	for _, s := range []string{
		`{"errors":[{"id":"e-1","code":"service.unavailable","detail":"try again","reason":"x","docUrl":"https://docs"}]}`,
		`{"meta":{"a":[1,{"b":2}]},"errors":[{"detail":"d","code":"request.timeout","id":"e-2"},{"code":"second"}]}`,
		`{"errors":[]}`,
		`{"errors":{"code":"x"}}`,
		`[{"errors":[{"code":"x"}]}]`,
		`{"errors":[{"id":7,"code":["x"]}]}`,
		`<html><title>502 Bad Gateway</title></html>`,
		``,
	} {
		f.Add([]byte(s), uint16(len(s)))
	}
	f.Fuzz(func(t *testing.T, body []byte, cut uint16) {
		got, ok := ParsePayrailsError(body)
		var whole struct {
			Errors []json.RawMessage `json:"errors"`
		}
		if json.Unmarshal(body, &whole) == nil && len(whole.Errors) > 0 {
			var want PayrailsError
			if json.Unmarshal(whole.Errors[0], &want) == nil && (ok != true || got != want) {
				t.Fatalf("ParsePayrailsError(%q) = %+v, %v; encoding/json reads %+v", body, got, ok, want)
			}
		}
		if int(cut) > len(body) {
			return
		}
		part, pok := ParsePayrailsError(body[:cut])
		if pok && ok && ((part.Code != "" && part.Code != got.Code) || (part.ID != "" && part.ID != got.ID)) {
			t.Fatalf("a cut of %q at %d reads %+v, the whole body %+v", body, cut, part, got)
		}
	})
}

// FuzzEdgeRefusal: whatever page an edge sends, judging it never panics,
// never reads more than SniffSize bytes, and always gives the body back
// whole; a JSON answer is never a refusal.
func FuzzEdgeRefusal(f *testing.F) {
	f.Add(400, "text/html", "<html><head><title>400 No required SSL certificate was sent</title></head></html>")
	f.Add(403, "text/html; charset=utf-8", "<TITLE>Forbidden</TITLE>")
	f.Add(400, "application/json", `{"errors":[{"code":"certificate"}]}`)
	f.Add(495, "text/html", "")
	f.Fuzz(func(t *testing.T, status int, contentType, body string) {
		resp := &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {contentType}},
			Body: io.NopCloser(strings.NewReader(body))}
		_, refused := EdgeRefusal(resp)
		if refused && IsJSON(contentType) {
			t.Fatalf("a JSON answer (%q) was taken for a refusal page", contentType)
		}
		rest := new(strings.Builder)
		if _, err := io.Copy(rest, resp.Body); err != nil || rest.String() != body {
			t.Fatalf("the body came back as %q (%v), want %q", rest.String(), err, body)
		}
	})
}
