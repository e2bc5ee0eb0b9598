package clientmatrix

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
)

// curl: the proxy from http_proxy / https_proxy (curl reads only the
// lower-case http_proxy), the local CA with --cacert.
var curlClient = &client{name: "curl", title: "curl 7.88", run: runCurl}

func TestCurl(t *testing.T) { t.Parallel(); runMatrix(t, curlClient) }

func runCurl(t *testing.T, f *fixture, p plan) []result {
	bin := interop.Tool(t, "curl")
	var rs []result
	for _, c := range p.Cases {
		dir := t.TempDir()
		args := []string{"-sS", "--cacert", p.CA, "-D", filepath.Join(dir, "headers"), "-w", `%{http_code} %{http_connect}\n`}
		switch c.Name {
		case "post":
			args = append(args, "-H", "Content-Type: application/json", "-H", "X-Idempotency-Key: "+p.Idem, "--data-binary", p.JSON)
		case "upload":
			args = append(args, "-H", "Content-Type: application/octet-stream", "--data-binary", "@"+p.Upload)
		case "chunked":
			args = append(args, "-H", "Content-Type: application/octet-stream", "-H", "Transfer-Encoding: chunked", "--data-binary", "@"+p.Upload)
		case "gzip":
			args = append(args, "--compressed")
		}
		for i, u := range c.URLs {
			args = append(args, "-o", filepath.Join(dir, "body"+strconv.Itoa(i)), u)
		}
		cmd := exec.Command(bin, args...)
		cmd.Env = append(cleanEnv(), p.env...)
		out, errOut, _ := run(cmd)
		rs = append(rs, cliResult(c.Name, string(out), string(errOut), dir, len(c.URLs)))
	}
	return rs
}

// cliResult makes a result of a command-line client's output: the last
// status line of "-w", its stderr, the last body file and headers file.
func cliResult(name, out, errOut, dir string, n int) result {
	r := result{Case: name, Error: strings.TrimSpace(errOut)}
	lines := strings.Fields(strings.TrimSpace(out))
	if len(lines) >= 2 {
		r.Status, _ = strconv.Atoi(lines[len(lines)-2])
		if r.Status == 0 {
			r.Status, _ = strconv.Atoi(lines[len(lines)-1]) // the CONNECT's answer
		}
	}
	body, _ := os.ReadFile(filepath.Join(dir, "body"+strconv.Itoa(n-1)))
	s := sha256.Sum256(body)
	r.BodySHA = hex.EncodeToString(s[:])
	hdr, _ := os.ReadFile(filepath.Join(dir, "headers"))
	r.ProxyError = headerValue(string(hdr), "X-Payrails-Proxy-Error")
	r.ContentEncoding = headerValue(string(hdr), "Content-Encoding")
	return r
}

func headerValue(head, name string) string {
	m := regexp.MustCompile(`(?im)^\s*`+regexp.QuoteMeta(name)+`:\s*(.*?)\s*$`).FindAllStringSubmatch(head, -1)
	if m == nil {
		return ""
	}
	return m[len(m)-1][1]
}

// wget: the proxy from http_proxy / https_proxy (credentials in the URL),
// the local CA with --ca-certificate.
var wgetClient = &client{name: "wget", title: "GNU Wget 1.21", run: runWget, na: map[string]string{
	"*/chunked": "wget sends a body only from --post-data or --post-file, always with Content-Length",
}}

func TestWget(t *testing.T) { t.Parallel(); runMatrix(t, wgetClient) }

func runWget(t *testing.T, f *fixture, p plan) []result {
	bin := interop.Tool(t, "wget")
	var rs []result
	for _, c := range p.Cases {
		dir := t.TempDir()
		args := []string{"-nv", "--server-response", "--tries=1", "--ca-certificate=" + p.CA, "--content-on-error"}
		switch c.Name {
		case "post":
			args = append(args, "--header=Content-Type: application/json", "--header=X-Idempotency-Key: "+p.Idem, "--post-data="+p.JSON)
		case "upload":
			args = append(args, "--header=Content-Type: application/octet-stream", "--post-file="+p.Upload)
		case "gzip":
			args = append(args, "--header=Accept-Encoding: gzip")
		}
		// One invocation, one body file: for keep-alive both URLs in one run, the last body is what counts.
		args = append(args, "-O", filepath.Join(dir, "body0"))
		args = append(args, c.URLs...)
		cmd := exec.Command(bin, args...)
		cmd.Env = append(cleanEnv(), p.env...)
		_, errOut, _ := run(cmd)
		r := result{Case: c.Name}
		head := string(errOut)
		if m := regexp.MustCompile(`(?m)^\s*HTTP/1\.[01] (\d{3})`).FindAllStringSubmatch(head, -1); m != nil {
			r.Status, _ = strconv.Atoi(m[len(m)-1][1])
		}
		if r.Status == 0 || r.Status >= 400 {
			r.Error = strings.TrimSpace(head)
		}
		body, _ := os.ReadFile(filepath.Join(dir, "body0"))
		if c.Name == "keepalive" {
			// -O concatenates both bodies; each is the stand-in's echo, so take the last line.
			lines := strings.Split(strings.TrimSpace(string(body)), "\n")
			body = []byte(lines[len(lines)-1] + "\n")
		}
		s := sha256.Sum256(body)
		r.BodySHA = hex.EncodeToString(s[:])
		r.ProxyError = headerValue(head, "X-Payrails-Proxy-Error")
		r.ContentEncoding = headerValue(head, "Content-Encoding")
		rs = append(rs, r)
	}
	return rs
}
