package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/proxy/upstream"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
	"github.com/mtlsproxy/payrails-mtls-proxy/proxy"
)

func init() {
	register(command{name: "check", summary: "explain a certificate folder as the proxy reads it; --remote tests it against the server",
		order: 40, run: runCheck})
}

// checkTimeouts bound --remote's one connection: long enough for a slow
// network, short enough for someone waiting at a terminal.
var checkTimeouts = proxy.Timeouts{Dial: 10 * time.Second, TLSHandshake: 10 * time.Second, ResponseHeader: 15 * time.Second}

// remoteTarget is --remote with --address and --ca-file, validated.
type remoteTarget struct {
	config upstream.ProbeConfig
	caFile string
}

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	var (
		cf                      certFlags
		vf                      viaFlags
		remote, address, caFile string
	)
	cf.register(fs)
	fs.StringVar(&remote, "remote", "", "also try the certificate against this server, `https://HOST`: one handshake and one GET")
	fs.StringVar(&address, "address", "", "with --remote: dial `HOST:PORT` instead of resolving the host (like curl --connect-to)")
	fs.StringVar(&caFile, "ca-file", "", "with --remote: extra CA certificates `file` to verify the server (system roots otherwise)")
	vf.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: payrails-mtls-proxy check (--cert-dir DIR | --cert F --key F) [--key-passphrase-file F | --key-uri pkcs11:...] "+
			"[--remote https://HOST [--address HOST:PORT] [--ca-file F] [--via http://HOST:PORT [--via-auth-file F]]]")
		fmt.Fprintln(fs.Output(), "\nReads the certificates exactly as the proxy does and says which pair it would present and why.")
		fmt.Fprintln(fs.Output(), "Exit status: 0 ready to serve (and, with --remote, accepted by the server), 1 not, 2 usage.")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	src, closeToken, err := cf.open()
	if err == nil {
		defer closeToken()
	}
	if err == nil && remote == "" && (address != "" || caFile != "" || vf.set()) {
		err = errors.New("--address, --ca-file and --via only apply with --remote https://HOST")
	}
	var target *remoteTarget
	if err == nil && remote != "" {
		target, err = newRemoteTarget(remote, address, caFile)
	}
	if err == nil && target != nil {
		target.config.Via, err = vf.egress()
	}
	if err != nil {
		fmt.Fprintf(stderr, "check: %v\n", err)
		return exitUsage
	}
	return check(ctx, stdout, src, target)
}

// check prints the inspection of src and, with a target, the probe of it,
// and returns the exit code.
func check(ctx context.Context, w io.Writer, src certs.Source, target *remoteTarget) int {
	host := ""
	if target != nil {
		host = target.config.URL.Hostname()
	}
	snap := certs.Load(src, time.Now())
	ins := certs.Inspect(snap, host)
	p := &checkPrinter{w: w, dir: src.Dir, source: src.Dir}
	switch {
	case src.Dir == "" && src.Token != nil:
		p.dir = filepath.Dir(src.CertFile)
		p.source = p.name(src.CertFile) + " + " + src.Token.URI()
	case src.Dir == "":
		if filepath.Dir(src.CertFile) == filepath.Dir(src.KeyFile) {
			p.dir = filepath.Dir(src.CertFile) // show both files by name
		}
		p.source = p.name(src.CertFile) + " + " + p.name(src.KeyFile)
	}
	p.inspection(ins)
	remoteOK, remoteVerdict := true, ""
	if target != nil {
		remoteOK, remoteVerdict = p.remote(ctx, target, snap.Chosen)
	}
	p.verdict(ins, remoteOK, remoteVerdict)
	if ins.Ready() && remoteOK {
		return exitOK
	}
	return exitFailure
}

func newRemoteTarget(remote, address, caFile string) (*remoteTarget, error) {
	u, err := url.Parse(remote)
	switch {
	case err != nil:
		return nil, fmt.Errorf("--remote %q: %w", remote, err)
	case u.Scheme != "https" || u.Host == "" || u.User != nil:
		return nil, fmt.Errorf("--remote %q: give the server as https://HOST (for example https://api.acme.payrails.io)", remote)
	}
	roots, err := certs.Roots(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	path := u.EscapedPath()
	return &remoteTarget{caFile: caFile, config: upstream.ProbeConfig{URL: &url.URL{Scheme: "https", Host: u.Host},
		Address: address, RootCAs: roots, Timeouts: checkTimeouts, Path: path}}, nil
}

// checkPrinter writes check's report: short lines, file names relative to
// the folder, the verdict last.
type checkPrinter struct {
	w      io.Writer
	dir    string // file names are shown relative to it; "" for full paths
	source string // the folder, or "CERT + KEY", as shown
}

func (p *checkPrinter) f(format string, args ...any) { fmt.Fprintf(p.w, format, args...) }

// name shows a path relative to the folder checked.
func (p *checkPrinter) name(path string) string {
	if p.dir == "" {
		return path
	}
	rel, err := filepath.Rel(p.dir, path)
	switch {
	case err != nil || strings.HasPrefix(rel, ".."):
		return path
	case rel == ".":
		return "(the folder)"
	}
	return rel
}

func (p *checkPrinter) inspection(ins *certs.Inspection) {
	p.f("Checking %s as the proxy reads it (%s)\n", ins.Source, ins.At.UTC().Format(timeLayout))
	p.files(ins.Files)
	p.pairs(ins)
	p.hosts(ins.Hosts)
	p.findings(ins.Findings)
}

const timeLayout = "2006-01-02 15:04 MST"

func (p *checkPrinter) files(files []certs.InspectedFile) {
	if len(files) == 0 {
		return
	}
	p.f("\nFiles:\n")
	width := 0
	for _, f := range files {
		width = max(width, len(p.name(f.Path)))
	}
	for _, f := range files {
		p.f("  %-*s  %s\n", width, p.name(f.Path), fileDetail(f))
	}
}

func fileDetail(f certs.InspectedFile) string {
	d := string(f.Kind)
	if len(f.Certs) > 0 {
		c := f.Certs[0]
		d += fmt.Sprintf(": CN %s, serial %s", orNone(c.CommonName), c.Serial)
		if len(f.Certs) > 1 {
			d += fmt.Sprintf(" (+%d more)", len(f.Certs)-1)
		}
	}
	if f.Keys > 0 {
		d += fmt.Sprintf(", mode %04o", f.Mode.Perm())
	}
	return d
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func (p *checkPrinter) pairs(ins *certs.Inspection) {
	if len(ins.Pairs) == 0 {
		p.f("\nCertificate + key pairs: none (no certificate here has its private key here)\n")
		return
	}
	p.f("\nCertificate + key pairs (best first):\n")
	for _, pr := range ins.Pairs {
		mark := ""
		if pr.InUse {
			mark = "   <- in use"
		}
		p.f("  %s + %s%s\n", p.name(pr.CertFile), p.name(pr.KeyFile), mark)
		p.f("      subject CN   %s%s\n", orNone(pr.CommonName), payrailsNote(pr.CommonName))
		for _, n := range pr.DNSNames {
			p.f("      DNS name     %s%s\n", n, payrailsNote(n))
		}
		p.f("      issuer       %s\n", orNone(pr.IssuerCommonName))
		p.f("      key          %s\n", pr.Key)
		p.f("      serial       %s\n", pr.Serial)
		p.f("      SHA-256      %s\n", pr.Fingerprint)
		p.f("      not before   %s\n", pr.NotBefore.UTC().Format(timeLayout))
		p.f("      not after    %s\n", pr.NotAfter.UTC().Format(timeLayout))
		p.f("      validity     %s\n", validityDetail(pr))
	}
	if c := ins.ChosenPair(); c != nil {
		p.f("\nIn use: %s + %s (serial %s): %s.\n", p.name(c.CertFile), p.name(c.KeyFile), c.Serial, ins.Reason)
	} else {
		p.f("\nIn use: none: no pair is valid now.\n")
	}
}

func payrailsNote(name string) string {
	if h, ok := certs.ParsePayrailsHost(name); ok {
		return "  (" + h.String() + ")"
	}
	return "  (not a Payrails API host)"
}

func validityDetail(pr certs.Description) string {
	switch {
	case pr.Validity == certs.Expired:
		return "EXPIRED: never used; remove it"
	case pr.Validity == certs.NotYetValid:
		return "NOT YET VALID (check this machine's clock if it should be)"
	case pr.ExpiresSoon:
		return fmt.Sprintf("valid, EXPIRES SOON: %d days left", pr.DaysLeft)
	}
	return fmt.Sprintf("valid, %d days left", pr.DaysLeft)
}

func (p *checkPrinter) hosts(hosts []certs.HostGroup) {
	if len(hosts) == 0 {
		return
	}
	p.f("\nHosts named by valid certificates (Payrails keeps at most %d active at a time):\n", certs.MaxActive)
	for _, h := range hosts {
		what := "not a Payrails API host"
		if h.Payrails != nil {
			what = h.Payrails.String()
		}
		p.f("  %s  %s: %d valid (%s)\n", h.Name, what, len(h.Serials), strings.Join(h.Serials, ", "))
	}
}

func (p *checkPrinter) findings(fs []certs.Finding) {
	if len(fs) == 0 {
		p.f("\nFindings: none.\n")
		return
	}
	counts := map[certs.Severity]int{}
	for _, f := range fs {
		counts[f.Severity]++
	}
	p.f("\nFindings: %s, %s, %s\n", plural(counts[certs.Error], "error"), plural(counts[certs.Warning], "warning"),
		plural(counts[certs.Info], "note"))
	for _, f := range fs {
		label := map[certs.Severity]string{certs.Error: "ERROR", certs.Warning: "WARNING", certs.Info: "note"}[f.Severity]
		p.f("%s\n", wrap(fmt.Sprintf("  %-7s  %s: %s", label, p.name(f.Path), f.Message), 100, 11))
	}
}

// wrap breaks s into lines of at most width columns at spaces, indenting
// the continuation lines.
func wrap(s string, width, indent int) string {
	var b strings.Builder
	col := 0
	for i, word := range strings.Split(s, " ") {
		switch {
		case i == 0:
		case col+1+len(word) > width && col > indent:
			b.WriteString("\n" + strings.Repeat(" ", indent))
			col = indent
		default:
			b.WriteByte(' ')
			col++
		}
		b.WriteString(word)
		col += len(word)
	}
	return b.String()
}

// verdict ends the report with one line that says whether the proxy can
// serve, and what to do if not.
func (p *checkPrinter) verdict(ins *certs.Inspection, remoteOK bool, remoteVerdict string) {
	c := ins.ChosenPair()
	switch {
	case c == nil:
		p.f("\n%s\n", wrap(fmt.Sprintf("NOT READY: no usable client certificate in %s; the proxy would answer "+
			"503. Fix the ERROR lines above, then run check again.", p.source), 100, 2))
	case !remoteOK:
		p.f("\n%s\n", wrap(fmt.Sprintf("NOT READY: %s + %s is fine locally (serial %s), but the server test "+
			"failed (%s); see \"Server\" above.", p.name(c.CertFile), p.name(c.KeyFile), c.Serial, remoteVerdict), 100, 2))
	default:
		extra := ""
		if remoteVerdict != "" {
			extra = ", and the server accepted it"
		}
		p.f("\n%s\n", wrap(fmt.Sprintf("OK: the proxy would present %s + %s (serial %s, CN %s), valid for %d "+
			"more days%s.", p.name(c.CertFile), p.name(c.KeyFile), c.Serial, orNone(c.CommonName), c.DaysLeft, extra), 100, 2))
	}
}
