package certs

import (
	"reflect"
	"testing"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
	"go.uber.org/zap"
)

// TestDescribe: each pair is described as of the snapshot's LoadedAt, with
// its key, the days left, the expiry warning and its Payrails hosts, and
// InUse on the chosen one only.
func TestDescribe(t *testing.T) {
	at := time.Now().Truncate(time.Second)
	ca, dir := newCA(t), t.TempDir()
	soon, err := ca.Issue(pki.LeafOptions{CommonName: "merchant", DNSNames: []string{"ACME-API.staging.payrails.io"},
		KeyType: pki.KeyEd25519, NotBefore: at.Add(-time.Hour), NotAfter: at.Add(10*24*time.Hour + time.Hour), Client: true})
	if err != nil {
		t.Fatal(err)
	}
	old := issue(t, ca, liveHost, pki.KeyRSA2048, at.Add(-48*time.Hour), at.Add(-24*time.Hour-time.Hour))
	write(t, dir, "soon.pem", append(soon.CertPEM, soon.KeyPEM...), 0o600)
	write(t, dir, "old.pem", append(old.CertPEM, old.KeyPEM...), 0o600)
	ds := Load(Source{Dir: dir}, at).Describe()
	if len(ds) != 2 {
		t.Fatalf("%d descriptions, want 2: %+v", len(ds), ds)
	}
	got, exp := ds[0], ds[1]
	staging := PayrailsHost{Host: "acme-api.staging.payrails.io", Company: "acme", Env: EnvStaging}
	switch {
	case got.Serial != Serial(soon.Cert) || !got.InUse || got.Validity != Valid:
		t.Errorf("first %+v: want the valid one, in use", got)
	case got.Key != "Ed25519" || got.CommonName != "merchant" || got.IssuerCommonName != "test CA":
		t.Errorf("key %q, CN %q, issuer CN %q; want Ed25519, merchant, test CA", got.Key, got.CommonName, got.IssuerCommonName)
	case got.DaysLeft != 10 || !got.ExpiresSoon:
		t.Errorf("days left %d, expires soon %v; want 10, true", got.DaysLeft, got.ExpiresSoon)
	case !reflect.DeepEqual(got.Payrails, []PayrailsHost{staging}):
		t.Errorf("Payrails hosts %+v, want %+v", got.Payrails, staging)
	case got.Subject != soon.Cert.Subject.String() || got.Issuer != soon.Cert.Issuer.String() ||
		got.Fingerprint != Fingerprint(soon.Cert.Raw):
		t.Errorf("subject %q, issuer %q, fingerprint %s do not match the certificate", got.Subject, got.Issuer, got.Fingerprint)
	}
	switch {
	case exp.InUse || exp.Validity != Expired || exp.ExpiresSoon:
		t.Errorf("second %+v: want the expired one, not in use, no expiry warning", exp)
	case exp.DaysLeft != -2 || exp.Key != "RSA-2048" || len(exp.Payrails) != 1:
		t.Errorf("days left %d, key %q, Payrails %v; want -2, RSA-2048, the live host", exp.DaysLeft, exp.Key, exp.Payrails)
	}
}

// TestViewsAgree: /certs (Report) and `check` (Inspect) describe the same
// snapshot with the same values.
func TestViewsAgree(t *testing.T) {
	ca, dir := newCA(t), t.TempDir()
	for i, age := range []time.Duration{time.Hour, 2 * time.Hour} {
		l := issue(t, ca, liveHost, pki.KeyECDSA, time.Now().Add(-age), time.Time{})
		write(t, dir, string(rune('a'+i))+".pem", append(l.CertPEM, l.KeyPEM...), 0o600)
	}
	s := NewStore("live", Source{Dir: dir}, zap.NewNop())
	r, ins := s.Report(), Inspect(s.Current(), "")
	if !reflect.DeepEqual(r.Candidates, ins.Pairs) {
		t.Errorf("Report's candidates %+v\nInspect's pairs %+v", r.Candidates, ins.Pairs)
	}
	if r.InUse == nil || ins.ChosenPair() == nil || !reflect.DeepEqual(*r.InUse, *ins.ChosenPair()) {
		t.Errorf("in use: Report %+v, Inspect %+v", r.InUse, ins.ChosenPair())
	}
}
