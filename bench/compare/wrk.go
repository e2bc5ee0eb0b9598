package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// wrkJob is one wrk run against one peer.
type wrkJob struct {
	Conns    int
	Path     string // /small or /big
	Close    bool   // send "Connection: close" on every request
	Duration time.Duration
}

// wrkRunner runs wrk on the load side's CPUs. Its zero value runs wrk
// unpinned with one thread and writes its Lua scripts to the working
// directory; prepare sets every field.
type wrkRunner struct {
	dir        string // where the forward-mode Lua scripts are written
	cpus       []int  // the load side's CPUs; empty: not pinned
	maxThreads int    // wrk threads at most (one per connection below that)
}

// run runs job j against in and parses wrk's report. Forward-mode peers
// get absolute-form requests through a Lua script.
func (w wrkRunner) run(ctx context.Context, in *instance, j wrkJob) (wrkResult, error) {
	threads := max(1, min(j.Conns, w.maxThreads))
	secs := max(1, int(j.Duration.Round(time.Second)/time.Second)) // wrk takes whole seconds
	args := []string{"wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(j.Conns),
		"-d", strconv.Itoa(secs) + "s", "--latency", "--timeout", "10s"}
	if j.Close {
		args = append(args, "-H", "Connection: close")
	}
	target := "http://" + in.addr + j.Path
	if in.Forward {
		script, err := w.forwardScript(j.Path)
		if err != nil {
			return wrkResult{}, err
		}
		args = append(args, "-s", script)
		target = "http://" + in.addr + "/"
	}
	out, err := runOnce(ctx, time.Duration(secs)*time.Second+30*time.Second, w.cpus, append(args, target)...)
	if err != nil {
		return wrkResult{}, err
	}
	return parseWrk(out)
}

// forwardScript returns a wrk Lua script that sends absolute-form requests
// for path on apiHost, as an HTTP_PROXY client does: "GET
// http://api.bench.test/small HTTP/1.1" with "Host: api.bench.test".
func (w wrkRunner) forwardScript(path string) (string, error) {
	name := filepath.Join(w.dir, "forward"+strings.ReplaceAll(path, "/", "-")+".lua")
	script := fmt.Sprintf("-- absolute-form request line, as HTTP_PROXY clients send\n"+
		"wrk.path = %q\nwrk.headers[\"Host\"] = %q\n", "http://"+apiHost+path, apiHost)
	if err := os.WriteFile(name, []byte(script), 0o644); err != nil {
		return "", err
	}
	return name, nil
}

// checkForwardScript proves that wrk with the forward script really sends
// an absolute-form request line: this proxy would serve an origin-form one
// just as well (base-URL mode), so the status code cannot tell. It points
// wrk for one second at a listener that records the first request line.
func (w wrkRunner) checkForwardScript(ctx context.Context) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	lines := make(chan string, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveCapture(ln, lines, &wg)
	}()
	script, err := w.forwardScript("/small")
	if err == nil {
		_, err = runOnce(ctx, 30*time.Second, nil, "wrk", "-t", "1", "-c", "1", "-d", "1s", "-s", script,
			"http://"+ln.Addr().String()+"/")
	}
	ln.Close()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("checking the forward-mode wrk script: %w", err)
	}
	want := "GET http://" + apiHost + "/small HTTP/1.1"
	select {
	case got := <-lines:
		if strings.TrimSpace(got) != want {
			return fmt.Errorf("wrk with the forward script sent %q, want %q", strings.TrimSpace(got), want)
		}
		return nil
	default:
		return fmt.Errorf("wrk with the forward script sent no request")
	}
}

// serveCapture answers every request on ln with an empty 200, keeping the
// connection open, and puts the first request line it sees on lines. It
// returns when ln is closed; connection handlers join wg.
func serveCapture(ln net.Listener, lines chan<- string, wg *sync.WaitGroup) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				select {
				case lines <- line:
				default:
				}
				for h := ""; h != "\r\n"; {
					if h, err = br.ReadString('\n'); err != nil {
						return
					}
				}
				if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")); err != nil {
					return
				}
			}
		}()
	}
}
