package main

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
)

// squidServer is a real squid (Debian's squid package) on loopback, the
// corporate egress proxy of `via`. It listens on three ports, each with
// its own rules:
//
//   - open: CONNECT to the allowed ports, no authentication;
//   - deny: refuses every CONNECT (403);
//   - auth: CONNECT only with Basic credentials of user (407 without).
//
// Only CONNECT is ever allowed: a request in plaintext would be refused
// and logged, and the access log is what the tests read.
type squidServer struct {
	open, deny, auth string // HOST:PORT of each port
	accessLog        string
}

// squidSetup is what startSquid needs: the ports CONNECT may reach, and
// the one user of the auth port.
type squidSetup struct {
	connectPorts   []string
	user, password string
}

// squidNames makes each squid's service name unique: squid names its
// shared-memory segments after it, so two at once (parallel packages,
// other engineers' tests) must not share one.
var squidNames atomic.Int64

// startSquid writes a configuration, runs `squid -N` (no daemon) and waits
// until every port accepts connections; it stops squid when the test ends
// and shows squid's cache.log if the test failed. Squid drops root
// privileges to its cache_effective_user, so when the tests run as root
// its folder is made that user's (in the system's temporary folder, since
// t.TempDir's parents are private to root).
func startSquid(t *testing.T, s squidSetup) *squidServer {
	t.Helper()
	bin := requireSquid(t)
	helper := "/usr/lib/squid/basic_ncsa_auth"
	if _, err := os.Stat(helper); err != nil {
		interop.Tool(t, helper) // the same skip or failure as a missing program
	}
	dir, err := os.MkdirTemp("", "payrails-squid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sq := &squidServer{open: freeAddr(t), deny: freeAddr(t), auth: freeAddr(t), accessLog: filepath.Join(dir, "access.log")}
	// basic_ncsa_auth accepts, besides crypt(3) hashes, the hex MD5 of the password.
	sum := md5.Sum([]byte(s.password))
	mustWrite(t, filepath.Join(dir, "passwd"), []byte(s.user+":"+hex.EncodeToString(sum[:])+"\n"), 0o644)
	runAs := ""
	if os.Geteuid() == 0 {
		runAs = squidUser(t)
	}
	conf := filepath.Join(dir, "squid.conf")
	mustWrite(t, conf, []byte(squidConf(dir, sq, s, runAs)), 0o644)
	if runAs != "" {
		chownTree(t, dir, runAs)
	}
	name := fmt.Sprintf("prtest%dn%d", os.Getpid(), squidNames.Add(1))
	var stderr strings.Builder
	cmd := exec.Command(bin, "-N", "-n", name, "-f", conf)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting squid: %v", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // shutdown_lifetime 0: squid exits within a second or two
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			cacheLog, _ := os.ReadFile(filepath.Join(dir, "cache.log"))
			t.Logf("squid's output:\n%s\nsquid's cache.log:\n%s", stderr.String(), cacheLog)
		}
	})
	for _, addr := range []string{sq.open, sq.deny, sq.auth} {
		poll.Until(t, "squid to listen on "+addr, 30*time.Second, func() bool {
			select {
			case <-exited:
				cacheLog, _ := os.ReadFile(filepath.Join(dir, "cache.log"))
				t.Fatalf("squid exited before listening on %s: %v\n%s\n%s", addr, waitErr, stderr.String(), cacheLog)
			default:
			}
			c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	return sq
}

// squidConf is startSquid's configuration: no cache, logs in dir, the
// three ports and their rules.
func squidConf(dir string, sq *squidServer, s squidSetup, runAs string) string {
	var ports []string
	for _, a := range s.connectPorts {
		_, p, _ := net.SplitHostPort(a)
		ports = append(ports, p)
	}
	user := ""
	if runAs != "" {
		user = "cache_effective_user " + runAs + "\n"
	}
	return fmt.Sprintf(`http_port %[2]s name=open
http_port %[3]s name=deny
http_port %[4]s name=auth
%[6]spid_filename %[1]s/squid.pid
cache_log %[1]s/cache.log
access_log stdio:%[1]s/access.log
cache deny all
cache_mem 0 MB
netdb_filename none
coredump_dir %[1]s
visible_hostname squid.test
shutdown_lifetime 0 seconds
auth_param basic program /usr/lib/squid/basic_ncsa_auth %[1]s/passwd
auth_param basic realm payrails-mtls-proxy test
acl SSL_ports port %[5]s
acl CONNECT method CONNECT
acl open_port myportname open
acl deny_port myportname deny
acl auth_port myportname auth
acl authed proxy_auth REQUIRED
http_access deny !CONNECT
http_access deny CONNECT !SSL_ports
http_access deny deny_port
http_access allow open_port
http_access allow auth_port authed
http_access deny all
`, dir, sq.open, sq.deny, sq.auth, strings.Join(ports, " "), user)
}

// requireSquid finds squid, which Debian installs in /usr/sbin (not on
// every user's PATH).
func requireSquid(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("squid"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/squid"); err == nil {
		return "/usr/sbin/squid"
	}
	return interop.Tool(t, "squid")
}

// squidUser is the unprivileged user squid runs as when started by root:
// Debian's package makes "proxy".
func squidUser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"proxy", "nobody"} {
		if _, err := user.Lookup(name); err == nil {
			return name
		}
	}
	t.Fatal("running as root, and neither the user proxy nor nobody exists for squid to run as")
	return ""
}

func chownTree(t *testing.T, dir, name string) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// squidLine is one line of squid's native access log: time, elapsed,
// client, result/status, bytes, method, URL, user, hierarchy, type. lines
// leaves out those of connections that sent nothing.
type squidLine struct {
	raw, result, method, url, user string
}

func (sq *squidServer) lines(t *testing.T) []squidLine {
	t.Helper()
	data, err := os.ReadFile(sq.accessLog)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []squidLine
	for l := range strings.Lines(string(data)) {
		f := strings.Fields(l)
		if len(f) < 8 {
			t.Fatalf("squid access log line %q: not the native format", l)
		}
		if f[6] == "error:transaction-end-before-headers" {
			continue // startSquid's connections that checked it listens
		}
		out = append(out, squidLine{raw: strings.TrimSpace(l), result: f[3], method: f[5], url: f[6], user: f[7]})
	}
	return out
}

// waitLines polls squid's access log until it holds n lines after the
// first skip (squid writes a tunnel's line when the tunnel closes), and
// returns them.
func (sq *squidServer) waitLines(t *testing.T, skip, n int) []squidLine {
	t.Helper()
	var ls []squidLine
	poll.Until(t, fmt.Sprintf("%d more lines in squid's access log", n), 15*time.Second, func() bool {
		ls = sq.lines(t)
		return len(ls) >= skip+n
	})
	return ls[skip:]
}

// onlyConnect fails unless every line of the log is a CONNECT: squid never
// saw a request in plaintext.
func (sq *squidServer) onlyConnect(t *testing.T) {
	t.Helper()
	for _, l := range sq.lines(t) {
		if l.method != "CONNECT" {
			t.Errorf("squid saw a %s, not a CONNECT: %s", l.method, l.raw)
		}
	}
}
