package main

import "text/template"

// The peers' configurations. Each template gets: Dir (the peer's own
// folder), Addr (its plain-HTTP listener), Admin (a second free port), API
// (the upstream address: the stand-in API or the wan relay), Host
// (apiHost), PKI (*pkiFiles, with the peer's own client certificate files),
// Workers (cores per peer), and Port and Bind (Addr's port and host).

// nginxConf: nginx as a reverse proxy with a pool of kept-alive mTLS
// connections. proxy_buffering off streams the body as this proxy does
// (with buffering on, a 1 MiB answer would spill to a temporary file);
// proxy_buffer_size 64k lets it read several 16 KiB TLS records at a time
// (proxy_buffers only has to be large enough for nginx to accept that).
var nginxConf = template.Must(template.New("nginx").Parse(`daemon off;
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
  upstream api {
    server {{.API}};
    keepalive 64;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
  }
  server {
    listen {{.Addr}};
    location / {
      proxy_pass https://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host {{.Host}};
      proxy_ssl_certificate {{.PKI.ClientCert}};
      proxy_ssl_certificate_key {{.PKI.ClientKey}};
      proxy_ssl_trusted_certificate {{.PKI.CA}};
      proxy_ssl_verify on;
      proxy_ssl_verify_depth 2;
      proxy_ssl_name {{.Host}};
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
      proxy_buffering off;
      proxy_buffer_size 64k;
      proxy_buffers 4 64k;
    }
  }
}
`))

// haproxyConf: HAProxy in HTTP mode, sharing idle server connections
// between client connections (http-reuse always). It verifies the API
// against the CA, with the SNI as the name to check.
var haproxyConf = template.Must(template.New("haproxy").Parse(`global
  nbthread {{.Workers}}
  maxconn 8192
  ssl-server-verify required
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 300s
frontend in
  bind {{.Addr}}
  default_backend api
backend api
  http-reuse always
  http-request set-header Host {{.Host}}
  server api {{.API}} ssl crt {{.PKI.ClientBundle}} ca-file {{.PKI.CA}} verify required sni str({{.Host}})
`))

// stunnelConf: stunnel in client mode. It works on TCP: each client
// connection gets its own TLS connection to the API (resumed from its
// session cache), held exactly as long as the client's. The global log
// level is info, for the "bound to" line that ends a reload (rotated);
// the service's is errors only, so that no line is written per connection.
var stunnelConf = template.Must(template.New("stunnel").Parse(`foreground = yes
pid =
debug = 6
syslog = no
[api]
client = yes
debug = 3
accept = {{.Addr}}
connect = {{.API}}
sni = {{.Host}}
cert = {{.PKI.ClientCert}}
key = {{.PKI.ClientKey}}
CAfile = {{.PKI.CA}}
verifyChain = yes
checkHost = {{.Host}}
TIMEOUTclose = 0
`))

// caddyConf: Caddy's reverse_proxy with the client certificate and a
// keep-alive pool of 64 idle connections (as nginx's keepalive 64) kept for
// 300 s (as nginx's upstream keepalive_timeout). Caddy logs no requests
// without a log directive in the site; automatic HTTPS is off, and the
// admin API (for caddy reload) is on the peer's admin port. Caddy 2.6 has
// no persist_config: it saves each loaded configuration under
// XDG_CONFIG_HOME, the peer's own folder. The transport offers HTTP/1.1 and h2, its
// default; the stand-in only speaks HTTP/1.1 unless --upstream-h2.
var caddyConf = template.Must(template.New("caddy").Parse(`{
	admin {{.Admin}}
	auto_https off
	log {
		level WARN
	}
}

http://:{{.Port}} {
	bind {{.Bind}}
	reverse_proxy {{.API}} {
		header_up Host {{.Host}}
		transport http {
			tls
			tls_client_auth {{.PKI.ClientCert}} {{.PKI.ClientKey}}
			tls_trusted_ca_certs {{.PKI.CA}}
			tls_server_name {{.Host}}
			keepalive 300s
			keepalive_idle_conns 64
			keepalive_idle_conns_per_host 64
		}
	}
}
`))

// proxyConf: this proxy, one upstream, logging only warnings (at info it
// writes one line per request).
var proxyConf = template.Must(template.New("proxy").Parse(`listen: {{.Addr}}
admin_listen: {{.Admin}}
log: {level: warn, format: json}
upstreams:
  - name: bench
    url: https://{{.Host}}
    address: {{.API}}
    cert_dir: {{.PKI.ClientDir}}
    ca_file: {{.PKI.CA}}
`))
