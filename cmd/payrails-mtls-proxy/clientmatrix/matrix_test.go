package clientmatrix

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The modes a legacy service uses the proxy in, and the cases each runs.
var (
	modes      = []string{"forward", "base", "mitm", "auth"}
	modeTitles = map[string]string{"forward": "forward (`HTTP_PROXY`)", "base": "base URL",
		"mitm": "`HTTPS_PROXY`, `connect: mitm`", "auth": "proxy credentials"}
	cases      = []string{"get", "post", "upload", "chunked", "keepalive", "gzip", "403", "407", "502", "tunnel-auth"}
	caseTitles = map[string]string{"get": "GET", "post": "JSON POST, idempotency key", "upload": "2 MiB, Content-Length",
		"chunked": "2 MiB, chunked", "keepalive": "keep-alive", "gzip": "gzip", "403": "403", "407": "407", "502": "502",
		"tunnel-auth": "`HTTPS_PROXY` with credentials"}
)

// modeNA are the cases a mode cannot have, whatever the client.
var modeNA = map[string]string{
	"base/403":            "a base URL names no host: every request goes to the default upstream",
	"forward/407":         "nothing asks for credentials without `access.proxy_auth_file` (the credentials mode)",
	"base/407":            "nothing asks for credentials without `access.proxy_auth_file` (the credentials mode)",
	"mitm/407":            "nothing asks for credentials without `access.proxy_auth_file` (the credentials mode)",
	"forward/tunnel-auth": "the credentials mode's case",
	"base/tunnel-auth":    "the credentials mode's case",
	"mitm/tunnel-auth":    "the credentials mode's case",
}

// client is one library, configured the way its users configure it.
type client struct {
	name  string // as in docs/clients.md and the stand-in's paths
	title string
	// na are the cases the library cannot do: "mode/case" or "*/case"
	// to the reason, shown in docs/clients.md.
	na map[string]string
	// run runs the cases of one mode and returns a result per case.
	run func(t *testing.T, f *fixture, p plan) []result
}

// plan is what a client process is given: its mode, the proxy, the
// files, and the cases with their URLs. It goes to the scripts as JSON in
// MATRIX_PLAN; the proxy settings also as the environment variables or
// flags the library reads.
type plan struct {
	Mode   string     `json:"mode"`
	Proxy  proxyPlan  `json:"proxy"`
	CA     string     `json:"ca"` // the local CA of connect: mitm
	Upload string     `json:"upload"`
	JSON   string     `json:"json"`
	Idem   string     `json:"idem"`
	Cases  []casePlan `json:"cases"`
	env    []string   // the proxy variables of the mode
}

type proxyPlan struct {
	Host string `json:"host"`
	Port int    `json:"port"`
	User string `json:"user"`
	Pass string `json:"pass"`
	URL  string `json:"url"` // http://[USER:PASSWORD@]HOST:PORT
	// HTTP and HTTPS tell whether http:// and https:// URLs go through
	// the proxy in this mode (base URL: neither).
	HTTP  bool `json:"http"`
	HTTPS bool `json:"https"`
}

type casePlan struct {
	Name string   `json:"name"`
	URLs []string `json:"urls"`
}

// result is what a client reports of one case: the status it got (0
// when it raised an error instead), the error's message, the SHA-256 of
// the body bytes it handed to its caller, and two answer headers.
type result struct {
	Case            string `json:"case"`
	Status          int    `json:"status"`
	Error           string `json:"error"`
	BodySHA         string `json:"body_sha256"`
	ProxyError      string `json:"proxy_error"`
	ContentEncoding string `json:"content_encoding"`
}

// applies reports whether c runs name in mode, or why not.
func (c *client) applies(mode, name string) (bool, string) {
	if why, ok := modeNA[mode+"/"+name]; ok {
		return false, why
	}
	for _, k := range []string{mode + "/" + name, "*/" + name} {
		if why, ok := c.na[k]; ok {
			return false, why
		}
	}
	return true, ""
}

func idemKey(lib, mode string) string { return "idem-" + lib + "-" + mode }

func prefix(lib, mode, name string) string { return "/m/" + lib + "/" + mode + "/" + name }

// casePaths are the paths a case requests.
func casePaths(lib, mode, name string) []string {
	p := prefix(lib, mode, name)
	switch name {
	case "get":
		return []string{p + "/get"}
	case "keepalive":
		return []string{p + "/1", p + "/2"}
	case "gzip":
		return []string{p + "/gzip"}
	case "502":
		return []string{p + "/cut"}
	}
	return []string{p}
}

// planFor makes the plan of lib in mode with the given cases; wrongPass
// gives the proxy a wrong password (the 407 case).
func (f *fixture) planFor(lib, mode string, names []string, wrongPass bool) plan {
	proxy := f.open
	if mode == "auth" {
		proxy = f.auth
	}
	host, port, _ := net.SplitHostPort(proxy.addr)
	pn, _ := strconv.Atoi(port)
	pp := proxyPlan{Host: host, Port: pn, URL: "http://" + proxy.addr}
	if mode == "auth" {
		pp.User, pp.Pass = proxyUser, proxyPass
		if wrongPass {
			pp.Pass = "wrong-pw"
		}
		pp.URL = "http://" + pp.User + ":" + pp.Pass + "@" + proxy.addr
	}
	p := plan{Mode: mode, CA: f.mitmCA, Upload: f.uploadFile, JSON: jsonBody, Idem: idemKey(lib, mode)}
	switch mode {
	case "forward":
		pp.HTTP = true
		p.env = []string{"http_proxy=" + pp.URL, "HTTP_PROXY=" + pp.URL}
	case "mitm":
		pp.HTTPS = true
		p.env = []string{"https_proxy=" + pp.URL, "HTTPS_PROXY=" + pp.URL}
	case "auth":
		pp.HTTP, pp.HTTPS = true, true
		p.env = []string{"http_proxy=" + pp.URL, "HTTP_PROXY=" + pp.URL, "https_proxy=" + pp.URL, "HTTPS_PROXY=" + pp.URL}
	}
	p.Proxy = pp
	for _, name := range names {
		base := map[string]string{"forward": "http://" + apiHost, "base": "http://" + proxy.addr,
			"mitm": "https://" + apiHost, "auth": "http://" + apiHost}[mode]
		switch name {
		case "403":
			base = strings.Replace(base, apiHost, otherHost, 1)
		case "tunnel-auth":
			base = "https://" + apiHost
		}
		cp := casePlan{Name: name}
		for _, path := range casePaths(lib, mode, name) {
			if name == "get" {
				path += "?q=1&r=two"
			}
			cp.URLs = append(cp.URLs, base+path)
		}
		p.Cases = append(p.Cases, cp)
	}
	return p
}

// runMatrix runs every case of c in every mode, one client process per
// mode (two in the credentials mode: the 407 needs a wrong password), and
// checks each.
func runMatrix(t *testing.T, c *client) {
	f := need(t)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			var names []string
			for _, name := range cases {
				if ok, _ := c.applies(mode, name); ok && name != "407" {
					names = append(names, name)
				}
			}
			got := map[string]result{}
			p := f.planFor(c.name, mode, names, false)
			start := time.Now()
			for _, r := range c.run(t, f, p) {
				got[r.Case] = r
			}
			if ok, _ := c.applies(mode, "407"); ok {
				names = append(names, "407")
				for _, r := range c.run(t, f, f.planFor(c.name, mode, []string{"407"}, true)) {
					got[r.Case] = r
				}
			}
			t.Logf("%s %s: %d cases in %s", c.name, mode, len(names), time.Since(start).Round(time.Millisecond))
			if testing.Verbose() {
				proxy := f.open
				if mode == "auth" {
					proxy = f.auth
				}
				for _, name := range names {
					for _, l := range proxy.requestLines(casePaths(c.name, mode, name)[0]) {
						t.Logf("%s: proxy mode %v status %v", name, l["mode"], l["status"])
					}
				}
			}
			for _, name := range names {
				t.Run(name, func(t *testing.T) {
					r, ok := got[name]
					if !ok {
						t.Fatalf("the client reported nothing for %s", name)
					}
					f.check(t, c.name, mode, name, r)
				})
			}
		})
	}
}

// check verifies one case from what the client reported, what reached
// the stand-in (over mTLS, with the proxy's client certificate) and the
// proxy's own log line.
func (f *fixture) check(t *testing.T, lib, mode, name string, r result) {
	t.Helper()
	paths := casePaths(lib, mode, name)
	proxy := f.open
	if mode == "auth" {
		proxy = f.auth
	}
	switch name {
	case "403", "407", "502":
		want, _ := strconv.Atoi(name)
		// A client that raises an error shows the status or its reason phrase
		// (wget: "Proxy tunneling failed: Forbidden").
		if r.Status != want && !strings.Contains(r.Error, name) && !strings.Contains(r.Error, http.StatusText(want)) {
			t.Fatalf("the client got %d %q, want the proxy's %d to reach it", r.Status, r.Error, want)
		}
		shows := fmt.Sprintf("status %d, X-Payrails-Proxy-Error %q", r.Status, r.ProxyError)
		if r.Status != want {
			shows = fmt.Sprintf("error %q", r.Error)
		}
		t.Logf("the client shows: %s; the proxy answered %d request(s) for it", shows, len(proxy.requestLines(paths[0])))
		if r.Status == want && r.ProxyError == "" && !(mode == "mitm" && name == "403") {
			t.Errorf("the %d reached the client without X-Payrails-Proxy-Error", want)
		}
		if name != "502" && len(f.api.arrivals(paths[0])) != 0 {
			t.Errorf("a refused request reached the upstream")
		}
		return
	}
	if r.Status != 200 {
		t.Fatalf("status %d, error %q (proxy error %q)", r.Status, r.Error, r.ProxyError)
	}
	for _, path := range paths {
		arr := f.api.arrivals(path)
		if len(arr) != 1 {
			t.Fatalf("%s reached the upstream %d times, want once", path, len(arr))
		}
		a := arr[0]
		if a.ClientSerial != f.serial {
			t.Errorf("%s arrived with client certificate %q, want the proxy's %s", path, a.ClientSerial, f.serial)
		}
		if a.ProxyAuthorization != "" {
			t.Errorf("Proxy-Authorization reached the upstream")
		}
		if a.Host != apiHost {
			t.Errorf("Host %q reached the upstream, want %s", a.Host, apiHost)
		}
		switch name {
		case "get":
			if a.Method != "GET" || a.Query != "q=1&r=two" || a.BodyLen != 0 {
				t.Errorf("arrived %s ?%s with %d body bytes", a.Method, a.Query, a.BodyLen)
			}
		case "post":
			if a.Method != "POST" || a.BodySHA != f.jsonSHA || !strings.HasPrefix(a.ContentType, "application/json") ||
				a.IdempotencyKey != idemKey(lib, mode) {
				t.Errorf("arrived %s, %d bytes (sha %s, want %s), Content-Type %q, X-Idempotency-Key %q (want %q)",
					a.Method, a.BodyLen, a.BodySHA, f.jsonSHA, a.ContentType, a.IdempotencyKey, idemKey(lib, mode))
			}
		case "upload", "chunked":
			want := map[string]string{"upload": "content-length", "chunked": "chunked"}[name]
			if a.BodyLen != uploadSize || a.BodySHA != f.uploadSHA || a.Framing != want {
				t.Errorf("arrived %d bytes framed %s (sha %s), want %d bytes framed %s (sha %s)",
					a.BodyLen, a.Framing, a.BodySHA, uploadSize, want, f.uploadSHA)
			}
		case "gzip":
			if !strings.Contains(a.AcceptEncoding, "gzip") {
				t.Errorf("Accept-Encoding %q reached the upstream", a.AcceptEncoding)
			}
			switch r.BodySHA {
			case sha(f.gzipBody): // the client hands over the compressed bytes
			case sha(f.plainGzip): // the client decompressed them
			default:
				t.Errorf("the client got a body with SHA-256 %s: neither the compressed bytes nor their content", r.BodySHA)
			}
			if lines := proxy.requestLines(path); len(lines) != 1 || lines[0]["bytes"] != float64(len(f.gzipBody)) {
				t.Errorf("the proxy's log for %s: %v, want %d bytes passed (the compressed size)", path, lines, len(f.gzipBody))
			}
		}
	}
	if name == "keepalive" {
		var clients []any
		for _, path := range paths {
			for _, l := range proxy.requestLines(path) {
				clients = append(clients, l["client"])
			}
		}
		if len(clients) != 2 || clients[0] != clients[1] {
			t.Errorf("the two requests came from %v: want one connection", clients)
		}
	}
}

// parseResults reads the JSON lines a client script printed.
func parseResults(t *testing.T, out, errOut []byte, err error) []result {
	t.Helper()
	var rs []result
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r result
		if jerr := json.Unmarshal([]byte(line), &r); jerr != nil {
			t.Errorf("unreadable result line %q: %v", line, jerr)
			continue
		}
		rs = append(rs, r)
	}
	if err != nil || len(rs) == 0 {
		t.Errorf("client process: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	return rs
}

// script runs a client script with the plan in MATRIX_PLAN and the mode's
// proxy variables, plus extra environment.
func script(t *testing.T, p plan, extraEnv []string, name string, args ...string) []result {
	t.Helper()
	var js strings.Builder
	enc := json.NewEncoder(&js)
	enc.SetEscapeHTML(false) // plain JSON, for the scripts' simple readers
	enc.Encode(p)
	cmd := exec.Command(name, args...)
	cmd.Env = append(append(append(cleanEnv(), p.env...), extraEnv...), "MATRIX_PLAN="+strings.TrimSpace(js.String()))
	timer := time.AfterFunc(90*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	out, errOut, err := run(cmd)
	return parseResults(t, out, errOut, err)
}
