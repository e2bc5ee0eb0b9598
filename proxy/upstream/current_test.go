package upstream

import (
	"context"
	"net/url"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/tlsscript"
)

// quietSource is a fakeSource that never signals a change: what a request
// meets when it arrives after a certificate's drop and before the loop has
// heard of it.
type quietSource struct{ fakeSource }

func (*quietSource) Changed() <-chan struct{} { return nil }

// TestNoCertificateYet: a request that finds no certificate presented
// while the source has a valid one is served with it, not refused with
// no_certificate: the loop (Run) is woken and the request waits for its
// choice; without a loop (tools) the choice is made in place.
func TestNoCertificateYet(t *testing.T) {
	for _, loop := range []bool{true, false} {
		t.Run(map[bool]string{true: "loop", false: "no loop"}[loop], func(t *testing.T) {
			s := startScripted(t, tlsscript.AnswerOK)
			src := &quietSource{}
			c, err := New(Config{Name: "t", URL: &url.URL{Scheme: "https", Host: "api.test"}, Address: s.addr,
				RootCAs: s.pki.CA.Pool(), Certificates: src, Retry: config.Retry{Attempts: 1}})
			if err != nil {
				t.Fatal(err)
			}
			if loop {
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error)
				go func() { done <- c.Run(ctx) }()
				t.Cleanup(func() { cancel(); <-done })
			} else {
				t.Cleanup(c.CloseIdleConnections)
			}
			cert := s.pki.Client.TLS()
			src.set(&cert) // dropped; the loop is not told
			resp, res, ferr := c.Send(newReq(t, "GET", "", nil))
			if ferr != nil {
				t.Fatalf("Send: %v (%s)", ferr, ferr.Kind)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || res.Serial != serialOf(&cert) {
				t.Errorf("answer %d on serial %q, want 200 on %q", resp.StatusCode, res.Serial, serialOf(&cert))
			}
		})
	}
}
