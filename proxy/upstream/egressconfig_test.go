package upstream

import (
	"net/url"
	"strings"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream/egress"
)

// TestEgressConfig: New refuses an egress proxy that is not
// http://HOST:PORT (config.ParseVia is the user-facing check), and one
// whose URL carries credentials, without repeating the password: the
// messages of a dial (EgressError) print the URL.
func TestEgressConfig(t *testing.T) {
	for _, v := range []string{"http://merchant:hunter2@squid:3128", "http://merchant@squid:3128"} {
		u, _ := url.Parse(v)
		up, err := New(Config{Name: "live", URL: &url.URL{Scheme: "https", Host: "api.acme.test"},
			Certificates: FixedCertificate{}, Via: &egress.Proxy{URL: u}})
		if err == nil {
			up.CloseIdleConnections()
		}
		if err == nil || !strings.Contains(err.Error(), "via_auth_file") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("via %s: error %v, want one pointing at via_auth_file without the password", u.Redacted(), err)
		}
	}
	for _, v := range []string{"https://squid:3128", "http://squid", "http://:3128"} {
		u, _ := url.Parse(v)
		up, err := New(Config{Name: "live", URL: &url.URL{Scheme: "https", Host: "api.acme.test"},
			Certificates: FixedCertificate{}, Via: &egress.Proxy{URL: u}})
		if err == nil {
			up.CloseIdleConnections()
		}
		if err == nil || !strings.Contains(err.Error(), "http://HOST:PORT") {
			t.Errorf("via %s: error %v, want one asking for http://HOST:PORT", v, err)
		}
	}
}
