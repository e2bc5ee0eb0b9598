package certs

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
)

const liveHost = "api.acme.payrails.io"

func TestInspect(t *testing.T) {
	now := time.Now()
	type leafSpec struct {
		cn       string
		dns      []string
		age      time.Duration // NotBefore is now minus age
		lifetime time.Duration
	}
	year := 365 * 24 * time.Hour
	tests := []struct {
		name       string
		leaves     []leafSpec
		target     string
		wantChosen int    // index in leaves of the chosen one; -1 for none
		wantCodes  []Code // Inspect's own findings, in order
		wantHosts  map[string]int
		wantMsg    string
	}{
		{"one live certificate", []leafSpec{{liveHost, nil, time.Hour, year}}, "", 0, nil,
			map[string]int{liveHost: 1}, ""},
		{"two valid: the normal rotation", []leafSpec{{liveHost, nil, 48 * time.Hour, year}, {liveHost, nil, time.Hour, year}},
			"", 1, nil, map[string]int{liveHost: 2}, ""},
		{"three valid for one host", []leafSpec{{liveHost, nil, 72 * time.Hour, year}, {liveHost, nil, 48 * time.Hour, year},
			{liveHost, nil, time.Hour, year}}, "", 2, []Code{CodeTooManyActive}, map[string]int{liveHost: 3},
			"3 valid certificates name api.acme.payrails.io"},
		{"expired ones do not count", []leafSpec{{liveHost, nil, 3 * year, year}, {liveHost, nil, 2 * year, year},
			{liveHost, nil, time.Hour, year}}, "", 2, nil, map[string]int{liveHost: 1}, ""},
		{"a SAN names the host", []leafSpec{{"merchant", []string{liveHost}, time.Hour, year}}, "", 0, nil,
			map[string]int{"merchant": 1, liveHost: 1}, ""},
		{"not a Payrails host", []leafSpec{{"api.acme.payrails.test", nil, time.Hour, year}}, "", 0,
			[]Code{CodeNotPayrailsHost}, map[string]int{"api.acme.payrails.test": 1}, "not a Payrails API host"},
		{"staging certificate for the live API", []leafSpec{{"acme-api.staging.payrails.io", nil, time.Hour, year}}, liveHost, 0,
			[]Code{CodeOtherHost}, map[string]int{"acme-api.staging.payrails.io": 1}, "Payrails staging API of company acme"},
		{"right environment", []leafSpec{{liveHost, nil, time.Hour, year}}, liveHost, 0, nil, map[string]int{liveHost: 1}, ""},
		{"only expired", []leafSpec{{liveHost, nil, 2 * year, year}}, "", -1, nil, map[string]int{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, dir := newCA(t), t.TempDir()
			var serials []string
			for i, l := range tt.leaves {
				leaf, err := ca.Issue(pki.LeafOptions{CommonName: l.cn, DNSNames: l.dns, NotBefore: now.Add(-l.age),
					NotAfter: now.Add(-l.age + l.lifetime), Client: true})
				if err != nil {
					t.Fatal(err)
				}
				serials = append(serials, Serial(leaf.Cert))
				name := string(rune('a' + i))
				write(t, dir, name+".pem", leaf.CertPEM, 0o644)
				write(t, dir, name+".key", leaf.KeyPEM, 0o600)
			}
			ins := Inspect(Load(Source{Dir: dir}, now), tt.target)
			checkChosen(t, ins, tt.wantChosen, serials)
			var codes []Code
			for _, f := range ins.Findings {
				if f.Code == CodeTooManyActive || f.Code == CodeNotPayrailsHost || f.Code == CodeOtherHost {
					codes = append(codes, f.Code)
					if f.Severity != Warning {
						t.Errorf("%s has severity %s, want warning", f.Code, f.Severity)
					}
					mustContain(t, f.Message, tt.wantMsg)
				}
			}
			if !slices.Equal(codes, tt.wantCodes) {
				t.Errorf("Inspect's findings %v, want %v", codes, tt.wantCodes)
			}
			checkHosts(t, ins, tt.wantHosts)
		})
	}
}

// checkHosts checks the host groups: how many valid certificates name
// each host, and that Payrails hosts are recognised as such.
func checkHosts(t *testing.T, ins *Inspection, want map[string]int) {
	t.Helper()
	hosts := map[string]int{}
	for _, h := range ins.Hosts {
		hosts[h.Name] = len(h.Serials)
		if _, isPayrails := ParsePayrailsHost(h.Name); isPayrails != (h.Payrails != nil) {
			t.Errorf("host %s: Payrails %v", h.Name, h.Payrails)
		}
	}
	if len(hosts) != len(want) {
		t.Errorf("hosts %v, want %v", hosts, want)
	}
	for h, n := range want {
		if hosts[h] != n {
			t.Errorf("host %s: %d valid certificates, want %d", h, hosts[h], n)
		}
	}
}

func checkChosen(t *testing.T, ins *Inspection, want int, serials []string) {
	t.Helper()
	if want < 0 {
		if ins.Ready() || ins.ChosenPair() != nil {
			t.Errorf("chosen %+v, want none", ins.ChosenPair())
		}
		return
	}
	c := ins.ChosenPair()
	if !ins.Ready() || c == nil {
		t.Fatalf("no pair chosen; findings %v", ins.Findings)
	}
	if c.Serial != serials[want] {
		t.Errorf("chosen serial %s, want %s", c.Serial, serials[want])
	}
	if c.Validity != Valid || c.DaysLeft < 300 || c.ExpiresSoon || c.Key != "ECDSA P-256" {
		t.Errorf("chosen pair %+v: want valid, about a year left, ECDSA P-256", c)
	}
	if ins.Reason == "" {
		t.Error("no reason for the choice")
	}
}

// TestInspectFiles: every file is reported with its kind, and the findings
// come most severe first.
func TestInspectFiles(t *testing.T) {
	ca, dir := newCA(t), t.TempDir()
	leaf := issue(t, ca, liveHost, pki.KeyECDSA, time.Time{}, time.Time{})
	old := issue(t, ca, liveHost, pki.KeyECDSA, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	write(t, dir, "domain.pem", leaf.CertPEM, 0o644)
	write(t, dir, "domain.key", leaf.KeyPEM, 0o644) // readable by others: a warning
	write(t, dir, "domain.csr", csrPEM(t, leaf), 0o644)
	write(t, dir, "old.pem", append(old.CertPEM, old.KeyPEM...), 0o600)
	ins := Inspect(Load(Source{Dir: dir}, time.Now()), "")
	kinds := map[string]Kind{}
	for _, f := range ins.Files {
		kinds[f.Path[len(dir)+1:]] = f.Kind
	}
	want := map[string]Kind{"domain.pem": KindCertificate, "domain.key": KindKey, "domain.csr": KindCSR, "old.pem": KindCertAndKey}
	for name, k := range want {
		if kinds[name] != k {
			t.Errorf("%s: kind %q, want %q", name, kinds[name], k)
		}
	}
	for i := 1; i < len(ins.Findings); i++ {
		if ins.Findings[i].Severity > ins.Findings[i-1].Severity {
			t.Errorf("findings not most severe first: %v", ins.Findings)
		}
	}
	if len(ins.Pairs) != 2 || ins.Pairs[1].Validity != Expired || ins.Pairs[1].DaysLeft >= 0 {
		t.Errorf("pairs %+v: want the valid one, then the expired one with negative days left", ins.Pairs)
	}
	if !strings.Contains(ins.Reason, "1 expired or not yet valid ignored") {
		t.Errorf("reason %q does not mention the expired certificate", ins.Reason)
	}
}
