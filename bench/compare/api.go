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

// apiConf is the stand-in Payrails API: nginx requiring the client
// certificate, keep-alive connections that live for the whole run (so that
// no peer is made to reconnect by the server), and TLS session resumption.
var apiConf = template.Must(template.New("api").Parse(`daemon off;
master_process on;
worker_processes {{.Workers}};
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path {{.Dir}}/tmp;
  proxy_temp_path {{.Dir}}/tmp;
  fastcgi_temp_path {{.Dir}}/tmp;
  uwsgi_temp_path {{.Dir}}/tmp;
  scgi_temp_path {{.Dir}}/tmp;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
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
    root {{.Dir}}/www;
    location = /small { default_type application/json; }
    location = /big { default_type application/octet-stream; }
    location / { return 404; }
  }
}
`))

// startAPI starts the stand-in API on the load side's CPUs and returns its
// address. The process joins procs.
func (b *bench) startAPI(ctx context.Context, procs *procSet) (string, error) {
	dir := filepath.Join(b.dir, "api")
	for _, d := range []string{dir, filepath.Join(dir, "tmp"), filepath.Join(dir, "www")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	big := make([]byte, bigSize)
	_, _ = rand.Read(big) // incompressible; crypto/rand never fails on Linux
	if err := os.WriteFile(filepath.Join(dir, "www", "big"), big, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "www", "small"), []byte(smallBody), 0o644); err != nil {
		return "", err
	}
	addr, err := freeAddr()
	if err != nil {
		return "", err
	}
	var conf bytes.Buffer
	err = apiConf.Execute(&conf, map[string]any{"Dir": dir, "Addr": addr, "Host": apiHost, "PKI": b.pki,
		"H2": b.opts.upstreamH2, "Workers": b.cpus.loadWorkers()})
	if err != nil {
		return "", err
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o644); err != nil {
		return "", err
	}
	p, err := procs.start("stand-in API (nginx)", b.cpus.Load, filepath.Join(dir, "out.log"), nil,
		"nginx", "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	if err != nil {
		return "", err
	}
	if err := p.waitListening(ctx, addr, 10*time.Second); err != nil {
		return "", fmt.Errorf("stand-in API: %w", err)
	}
	return addr, nil
}
