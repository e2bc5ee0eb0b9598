package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"text/template"
	"time"
)

// smallBody is what GET /small answers: a payment-sized JSON document.
const smallBody = `{"id":"pay_7f3c2a9e4b1d4c8f","status":"Authorized","amount":{"value":"12.50","currency":"EUR"},` +
	`"merchantReference":"order-000123","createdAt":"2026-01-01T12:00:00Z",` +
	`"links":{"self":"/merchant/payments/pay_7f3c2a9e4b1d4c8f"}}` + "\n"

// bigSize is the size of GET /big.
const bigSize = 1 << 20

// shortKeepAlive is the stand-in's keep-alive timeout in the sparse and
// rotated scenarios: short, as a real edge's, so that idle pooled
// connections are closed by the server.
const shortKeepAlive = time.Second

// apiConf is the stand-in Payrails API: nginx requiring the client
// certificate and TLS session resumption. The main one keeps keep-alive
// connections for the whole run (so that no peer is made to reconnect by
// the server); the one of sparse and rotated closes them after
// shortKeepAlive and logs each request's client certificate serial, which
// rotated checks. "/" answers GET and HEAD with 200 and a JSON body: the
// probe this proxy sends to verify a new certificate before use (HEAD
// verify_path, "/" by default).
var apiConf = template.Must(template.New("api").Parse(`daemon off;
master_process on;
worker_processes {{.Workers}};
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;
events { worker_connections 4096; }
http {
{{- if .AccessLog}}
  log_format serial '$ssl_client_serial $request_method $uri $status';
  access_log {{.AccessLog}} serial;
{{- else}}
  access_log off;
{{- end}}
  client_body_temp_path {{.Dir}}/tmp;
  proxy_temp_path {{.Dir}}/tmp;
  fastcgi_temp_path {{.Dir}}/tmp;
  uwsgi_temp_path {{.Dir}}/tmp;
  scgi_temp_path {{.Dir}}/tmp;
  keepalive_requests 1000000;
  keepalive_timeout {{.KeepAliveSeconds}}s;
  server {
    listen {{.Addr}} ssl{{if .H2}} http2{{end}};
    server_name {{.Host}};
    ssl_certificate {{.PKI.ServerCert}};
    ssl_certificate_key {{.PKI.ServerKey}};
    ssl_client_certificate {{.PKI.CA}};
    ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:api:10m;
    ssl_session_timeout 1h;
    root {{.WWW}};
    location = /small { default_type application/json; }
    location = /big { default_type application/octet-stream; }
    location = / { default_type application/json; return 200 '{"status":"ok"}\n'; }
    location / { default_type application/json; return 404 '{"error":"not_found"}\n'; }
  }
}
`))

// standIn is a running stand-in API.
type standIn struct {
	addr      string
	accessLog string // "" when it logs no requests
}

// startAPI starts the main stand-in API on the load side's CPUs and
// returns its address: keep-alive for the whole run, no request log. Its
// www folder (the bodies) serves every stand-in of the run. The process
// joins procs.
func (b *bench) startAPI(ctx context.Context, procs *procSet) (string, error) {
	www := filepath.Join(b.dir, "api", "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		return "", err
	}
	big := make([]byte, bigSize)
	_, _ = rand.Read(big) // incompressible; crypto/rand never fails on Linux
	if err := os.WriteFile(filepath.Join(www, "big"), big, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(www, "small"), []byte(smallBody), 0o644); err != nil {
		return "", err
	}
	api, err := b.startStandIn(ctx, procs, "api", 300*time.Second, false, b.opts.upstreamH2)
	return api.addr, err
}

// startStandIn starts a stand-in API in b.dir/name with the given
// keep-alive timeout, logging each request when accessLog is set, offering
// HTTP/2 when h2.
func (b *bench) startStandIn(ctx context.Context, procs *procSet, name string, keepAlive time.Duration, accessLog, h2 bool) (standIn, error) {
	dir := filepath.Join(b.dir, name)
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return standIn{}, err
	}
	var s standIn
	var err error
	if s.addr, err = freeAddr(); err != nil {
		return standIn{}, err
	}
	if accessLog {
		s.accessLog = filepath.Join(dir, "access.log")
	}
	var conf bytes.Buffer
	err = apiConf.Execute(&conf, map[string]any{"Dir": dir, "Addr": s.addr, "Host": apiHost, "PKI": b.pki,
		"H2": h2, "Workers": b.cpus.loadWorkers(), "WWW": filepath.Join(b.dir, "api", "www"),
		"KeepAliveSeconds": int(keepAlive / time.Second), "AccessLog": s.accessLog})
	if err != nil {
		return standIn{}, err
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o644); err != nil {
		return standIn{}, err
	}
	p, err := procs.start("stand-in API (nginx, "+name+")", b.cpus.Load, filepath.Join(dir, "out.log"), nil,
		"nginx", "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	if err != nil {
		return standIn{}, err
	}
	if err := p.waitListening(ctx, s.addr, 10*time.Second); err != nil {
		return standIn{}, fmt.Errorf("stand-in API: %w", err)
	}
	return s, nil
}
