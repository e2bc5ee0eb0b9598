package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
)

// nginxServer is a real nginx on loopback, a server no one here wrote.
type nginxServer struct {
	addr string
	opts nginxOptions
	dir  string // its prefix: nginx.conf, logs/, tmp/
	pid  int    // the master's when reloadable, else the only process's

	statusAddr string // reloadable: the plain-HTTP server that names the worker process

	bin    string
	proc   *nginxProcess // the one running now; the test's goroutine alone changes it
	stderr lockedBuilder // of every run
}

// nginxProcess is one run of nginx, from start to exit.
type nginxProcess struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed once it has exited; its stderr is complete then
	waitErr error
}

// nginxOptions is what startNginxWith runs: one TLS server block that
// requires a client certificate (ssl_verify_client on) signed by a CA of
// clientCA.
type nginxOptions struct {
	serverCert, serverKey string
	// clientCA is the file of ssl_client_certificate: the CAs whose client
	// certificates nginx accepts. A test may rewrite it and reload.
	clientCA string
	// locations are the server block's location blocks.
	locations string
	// server holds further directives of the server block, such as ssl_crl
	// or keepalive_timeout; "" keeps nginx's defaults.
	server string
	// http holds further directives of the http block, such as log_format.
	// In it, locations and server, {{logs}} stands for the logs/ folder.
	http string
	// accessLog makes nginx log every request as a JSON line (nginxLogLine)
	// to logs/access.log; see accessLog.
	accessLog bool
	// http2 offers HTTP/2 in ALPN on the TLS server block (listen ...
	// http2, nginx 1.22's form), as API edges commonly do.
	http2 bool
	// reloadable runs nginx with its master process, which reload needs:
	// on SIGHUP the master re-reads nginx.conf, starts workers with it and
	// shuts the old ones down gracefully, as `nginx -s reload` does. With
	// master_process off (the default, one process and nothing to
	// coordinate) nginx cannot re-read its configuration at all.
	reloadable bool
}

// startNginx runs nginx with one TLS server block that requires a client
// certificate signed by clientCA and holds the given location blocks. When
// the test fails, nginx's error log is shown.
func startNginx(t testing.TB, serverCert, serverKey, clientCA, locations string) *nginxServer {
	t.Helper()
	return startNginxWith(t, nginxOptions{serverCert: serverCert, serverKey: serverKey, clientCA: clientCA, locations: locations})
}

// startNginxWith runs nginx as o says, on a free loopback port, until the
// test ends. When the test fails, nginx's error log is shown.
func startNginxWith(t testing.TB, o nginxOptions) *nginxServer {
	t.Helper()
	n := &nginxServer{addr: freeAddr(t), opts: o, dir: t.TempDir(), bin: interop.Tool(t, "nginx")}
	for _, d := range []string{"logs", "tmp"} {
		if err := os.Mkdir(filepath.Join(n.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if o.reloadable {
		n.statusAddr = freeAddr(t)
	}
	n.writeConf(t)
	t.Cleanup(func() {
		n.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("nginx's error log:\n%s", n.stderr.String())
		}
	})
	n.start(t)
	return n
}

// start runs nginx and waits until it listens on n.addr.
func (n *nginxServer) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(n.bin, "-p", n.dir, "-c", n.confPath(), "-e", "stderr")
	cmd.Stderr = &n.stderr // with the master, os/exec copies the workers' writes too: they share the pipe
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nginx: %v", err)
	}
	p := &nginxProcess{cmd: cmd, exited: make(chan struct{})}
	go func() { p.waitErr = cmd.Wait(); close(p.exited) }()
	n.proc, n.pid = p, cmd.Process.Pid
	poll.Until(t, "nginx to listen on "+n.addr, 10*time.Second, func() bool {
		select {
		case <-p.exited:
			t.Fatalf("nginx exited before listening on %s: %v", n.addr, p.waitErr) // the cleanup shows why
		default:
		}
		c, err := net.DialTimeout("tcp", n.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// stop ends the running nginx, if any, and waits for it to exit. SIGTERM
// is nginx's fast shutdown (the master exits once its workers have), and
// is followed by SIGKILL only if that hangs (it would orphan a worker);
// SIGKILL stops it where it is.
func (n *nginxServer) stop(sig syscall.Signal) {
	p := n.proc
	if p == nil {
		return
	}
	n.proc = nil
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// restart kills nginx (SIGKILL: whatever it was doing stops there, and the
// kernel closes its connections and its listening socket), keeps the port
// closed for down, and starts nginx again on the same port, as a crash and
// a supervisor's restart would. It returns how long the port was closed:
// down and nginx's start. Not with reloadable (killing the master would
// orphan its worker).
func (n *nginxServer) restart(t testing.TB, down time.Duration) time.Duration {
	t.Helper()
	if n.opts.reloadable {
		t.Fatal("nginx restart is for a single process (nginxOptions.reloadable off)")
	}
	n.stop(syscall.SIGKILL)
	killed := time.Now()
	time.Sleep(down) // the outage itself, not a wait for anything
	n.start(t)
	return time.Since(killed)
}

// lockedBuilder is a strings.Builder safe for concurrent use: nginx's
// stderr is written by os/exec's copying goroutine.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (n *nginxServer) confPath() string { return filepath.Join(n.dir, "nginx.conf") }

func (n *nginxServer) writeConf(t testing.TB) {
	t.Helper()
	conf := strings.ReplaceAll(nginxConf(n.dir, n.addr, n.statusAddr, n.opts), "{{logs}}", filepath.Join(n.dir, "logs"))
	mustWrite(t, n.confPath(), []byte(conf), 0o644)
}

// reload makes nginx run with o (same port): it rewrites nginx.conf, sends
// the master SIGHUP, and returns once the worker that served before has
// exited (within worker_shutdown_timeout) and a new one answers, so that
// no connection made under the old configuration is left. Files the configuration names (the
// client CA bundle, a CRL) are read again too. Needs reloadable.
func (n *nginxServer) reload(t testing.TB, o nginxOptions) {
	t.Helper()
	if !n.opts.reloadable || !o.reloadable {
		t.Fatal("nginx reload needs nginxOptions.reloadable (the master process)")
	}
	old := n.workerPID(t)
	n.opts = o
	n.writeConf(t)
	if err := syscall.Kill(n.pid, syscall.SIGHUP); err != nil {
		t.Fatalf("signalling nginx's master %d to reload: %v", n.pid, err)
	}
	poll.Until(t, fmt.Sprintf("nginx's worker %d to exit after the reload (a configuration nginx rejects keeps "+
		"the old worker: see nginx's error log)", old), 10*time.Second, func() bool {
		return errors.Is(syscall.Kill(old, 0), syscall.ESRCH)
	})
	if now := n.workerPID(t); now == old {
		t.Fatalf("nginx's worker is still %d after the reload", now)
	}
}

// workerPID asks nginx which worker process serves (worker_processes 1),
// on a connection of its own.
func (n *nginxServer) workerPID(t testing.TB) int {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + n.statusAddr + "/worker")
	if err != nil {
		t.Fatalf("asking nginx for its worker: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("nginx named its worker %q: %v", b, err)
	}
	return pid
}

// nginxLogLine is one line of the access log (nginxOptions.accessLog): what
// nginx saw of a request and of the client certificate on its connection.
type nginxLogLine struct {
	Msec               string `json:"msec"` // the time it was logged, seconds.milliseconds since the epoch
	Connection         string `json:"connection"`
	ConnectionRequests string `json:"connection_requests"`
	Serial             string `json:"serial"` // $ssl_client_serial
	Verify             string `json:"verify"` // $ssl_client_verify: SUCCESS, FAILED:reason, NONE
	Status             string `json:"status"`
	Method             string `json:"method"`
	URI                string `json:"uri"`
	UserAgent          string `json:"user_agent"`
	Protocol           string `json:"protocol"` // $server_protocol: HTTP/1.1, HTTP/2.0
}

// at is when nginx logged the line.
func (l nginxLogLine) at() time.Time {
	f, _ := strconv.ParseFloat(l.Msec, 64)
	return time.UnixMilli(int64(f * 1000))
}

// accessLog returns the complete lines nginx has logged so far.
func (n *nginxServer) accessLog(t testing.TB) []nginxLogLine {
	t.Helper()
	f, err := os.Open(filepath.Join(n.dir, "logs", "access.log"))
	if err != nil {
		t.Fatalf("nginx's access log: %v", err)
	}
	defer f.Close()
	var lines []nginxLogLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l nginxLogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			continue // the line nginx is writing right now
		}
		lines = append(lines, l)
	}
	return lines
}

// nginxConf is the configuration startNginxWith runs: one TLS server block
// on addr requiring a client certificate signed by o.clientCA, and, when
// statusAddr is set, a plain-HTTP server there that names the worker.
func nginxConf(dir, addr, statusAddr string, o nginxOptions) string {
	process := "master_process off;"
	if o.reloadable {
		// worker_shutdown_timeout: an old worker waits for its connections
		// to finish, and nginx does not count one still waiting for its
		// first request (a warm connection) as idle: without it, reload
		// would wait client_header_timeout (60 s) for such a connection.
		process = "master_process on;\nworker_shutdown_timeout 1s;"
		if os.Geteuid() == 0 {
			// Workers of a root master switch to nobody, who may not enter
			// the test's temporary folders.
			process += "\nuser root;"
		}
	}
	accessLog := "access_log off;"
	if o.accessLog {
		accessLog = `log_format edge escape=json '{"msec":"$msec","connection":"$connection",` +
			`"connection_requests":"$connection_requests","serial":"$ssl_client_serial","verify":"$ssl_client_verify",` +
			`"status":"$status","method":"$request_method","uri":"$request_uri","user_agent":"$http_user_agent",` +
			`"protocol":"$server_protocol"}';
  access_log ` + filepath.Join(dir, "logs", "access.log") + ` edge;`
	}
	status := ""
	if statusAddr != "" {
		status = fmt.Sprintf(`
  server {
    listen %s;
    location = /worker { default_type text/plain; return 200 "$pid"; }
  }`, statusAddr)
	}
	listen := addr + " ssl"
	if o.http2 {
		listen += " http2"
	}
	return fmt.Sprintf(`daemon off;
%[8]s
worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
  %[9]s
%[12]s
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
%[10]s
%[7]s
  }%[11]s
}
`, dir, listen, apiHost, o.serverCert, o.serverKey, o.clientCA, o.locations, process, accessLog, o.server, status, o.http)
}
