package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
)

// nginxServer is a real nginx on loopback, a server no one here wrote.
type nginxServer struct {
	addr string
}

// startNginx runs nginx with one TLS server block that requires a client
// certificate signed by clientCA and holds the given location blocks. When
// the test fails, nginx's error log is shown.
func startNginx(t testing.TB, serverCert, serverKey, clientCA, locations string) *nginxServer {
	t.Helper()
	bin := requireTool(t, "nginx")
	dir := t.TempDir()
	for _, d := range []string{"logs", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	confPath := filepath.Join(dir, "nginx.conf")
	conf := nginxConf(dir, addr, serverCert, serverKey, clientCA, locations)
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd := exec.Command(bin, "-p", dir, "-c", confPath, "-e", "stderr")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nginx: %v", err)
	}
	exited := make(chan struct{}) // closed once nginx has exited; stderr is complete then
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("nginx's error log:\n%s", stderr.String())
		}
	})
	poll.Until(t, "nginx to listen on "+addr, 10*time.Second, func() bool {
		select {
		case <-exited:
			t.Fatalf("nginx exited before listening on %s: %v", addr, waitErr) // the cleanup shows why
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return &nginxServer{addr: addr}
}

// nginxConf is the configuration startNginx runs: one TLS server block on
// addr requiring a client certificate signed by clientCA, with locations.
func nginxConf(dir, addr, serverCert, serverKey, clientCA, locations string) string {
	return fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp;
  proxy_temp_path %[1]s/tmp;
  fastcgi_temp_path %[1]s/tmp;
  uwsgi_temp_path %[1]s/tmp;
  scgi_temp_path %[1]s/tmp;
  server {
    listen %[2]s ssl;
    server_name %[3]s;
    ssl_certificate %[4]s;
    ssl_certificate_key %[5]s;
    ssl_client_certificate %[6]s;
    ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
%[7]s
  }
}
`, dir, addr, apiHost, serverCert, serverKey, clientCA, locations)
}
