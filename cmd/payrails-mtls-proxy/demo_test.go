package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/poll"
)

// startDemoProcess runs `demo` as a process of its own (the test binary
// running main) and returns it with what it printed up to its commands.
func startDemoProcess(t *testing.T, extra ...string) (*exec.Cmd, string) {
	t.Helper()
	args := append([]string{"demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--key-type", "ecdsa"}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), envRunMain+"=1")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	printed := make(chan string, 1)
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "Ctrl-C") {
				break
			}
		}
		printed <- b.String()
		io.Copy(io.Discard, out)
	}()
	select {
	case p := <-printed:
		if !strings.Contains(p, "Ctrl-C") {
			t.Fatalf("demo stopped before printing its commands:\n%s\n%s", p, errb.String())
		}
		return cmd, p
	case <-time.After(60 * time.Second):
		t.Fatalf("demo printed nothing within 60 s: %s", errb.String())
		return nil, ""
	}
}

// TestDemoCleansUpOnSignals: the demo's folder holds a private key; it is
// deleted whether the demo is stopped with Ctrl-C (SIGINT), kill (SIGTERM)
// or a closed terminal (SIGHUP), and the demo exits (issue 24, item 5).
func TestDemoCleansUpOnSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd, printed := startDemoProcess(t)
			m := regexp.MustCompile(`Everything lives in (\S+) and`).FindStringSubmatch(printed)
			if m == nil {
				t.Fatalf("no folder in:\n%s", printed)
			}
			dir := m[1]
			if _, err := os.Stat(dir); err != nil {
				t.Fatalf("the demo's folder: %v", err)
			}
			cmd.Process.Signal(sig)
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case <-exited:
			case <-time.After(20 * time.Second):
				t.Fatalf("the demo still runs 20 s after %s", sig)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("after %s the demo's folder %s is still there (%v)", sig, dir, err)
				os.RemoveAll(dir)
			}
		})
	}
}

// TestDemoAPIListen: --api-listen chooses the stand-in's port, and the
// stand-in's refusal of a call without the client certificate is
// unmistakable: an HTTP answer that says so, not a TLS alert that curl
// reports as "(55) getpeername() failed" (issue 24, item 5).
func TestDemoAPIListen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	outR, outW, _ := os.Pipe()
	var errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--api-listen", addr,
			"--key-type", "ecdsa"}, outW, &errb)
		outW.Close()
	}()
	defer func() {
		cancel()
		<-done
		outR.Close()
	}()
	var printed bytes.Buffer
	buf := make([]byte, 4096)
	for !strings.Contains(printed.String(), "Ctrl-C") {
		n, err := outR.Read(buf)
		printed.Write(buf[:n])
		if err != nil {
			t.Fatalf("demo stopped before printing its commands: %v\n%s\n%s", err, printed.String(), errb.String())
		}
	}
	if !strings.Contains(printed.String(), "listening on "+addr) {
		t.Errorf("the stand-in does not listen on --api-listen %s:\n%s", addr, printed.String())
	}
	m := regexp.MustCompile(`--cacert (\S+) --connect-to`).FindStringSubmatch(printed.String())
	if m == nil {
		t.Fatalf("no direct curl command in:\n%s", printed.String())
	}
	caPEM, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: demoHost}}}
	defer c.CloseIdleConnections()
	var resp *http.Response
	poll.Until(t, "the stand-in answers on --api-listen", 10*time.Second, func() bool {
		resp, err = c.Get("https://" + addr + "/merchant/payments")
		return err == nil
	})
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "No required SSL certificate was sent") {
		t.Errorf("a call without the client certificate: %d %s, want 400 with nginx's refusal page", resp.StatusCode, body)
	}
	if want := "No required SSL certificate was sent"; !strings.Contains(printed.String(), want) {
		t.Errorf("the demo does not say what the refusal looks like (%q):\n%s", want, printed.String())
	}
}

// TestServeHelpNamesConnectModes: serve -h names both values of --connect.
func TestServeHelpNamesConnectModes(t *testing.T) {
	code, _, errOut := runCLI(t, nil, "serve", "-h")
	if code != exitOK {
		t.Fatalf("serve -h: exit %d", code)
	}
	if !regexp.MustCompile(`-connect[^\n]*\n[^\n]*reject[^\n]*mitm`).MatchString(errOut) {
		t.Errorf("serve -h does not name mitm for --connect:\n%s", errOut)
	}
}
