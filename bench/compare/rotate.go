package main

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
	"github.com/mtlsproxy/payrails-mtls-proxy/certs/pki"
)

// rotator issues the rotated scenario's certificates. Each is new (serial,
// and a NotBefore one second after the previous one's, all in the past, so
// that each is the newest valid certificate when it is dropped); its key
// alternates between the bench's client key and a second RSA-4096 key, so
// that it always differs from the key in use. (An RSA-4096 key takes
// seconds to generate: one per rotation would make the scenario mostly key
// generation.)
type rotator struct {
	ca   *pki.CA
	keys [2]crypto.Signer
	from time.Time // the bench client certificate's NotBefore
	n    int       // rotations issued so far
}

func newRotator(p *pkiFiles) (*rotator, error) {
	key, err := pki.NewKey(pki.KeyRSA4096)
	if err != nil {
		return nil, fmt.Errorf("generating the second client key: %w", err)
	}
	return &rotator{ca: p.ca, keys: [2]crypto.Signer{p.client.Key, key}, from: p.client.Cert.NotBefore}, nil
}

// next issues the next rotation's certificate.
func (r *rotator) next() (*pki.Leaf, error) {
	r.n++
	return r.ca.Issue(pki.LeafOptions{CommonName: apiHost, Organization: "Bench Merchant GmbH", Client: true,
		Key: r.keys[r.n%2], NotBefore: r.from.Add(time.Duration(r.n) * time.Second)})
}

// runRotated times the first request through each peer after each of
// --rotations certificate rotations per run. A rotation of this proxy drops
// the new certificate and key (one file) into its folder and waits until
// /certs reports the new serial in use; of another peer, it replaces the
// certificate files its configuration names and reloads it, waiting until
// the reload is complete (see each peer's reload). Then one request, the
// first after the rotation, is timed, on a new client connection as in
// wan, and the stand-in's request log must show that it was sent with the
// new certificate. The peers take turns, one rotation each.
func runRotated(ctx context.Context, r *rig, s scenario) ([]row, error) {
	r.progress("%s: generating a second RSA-4096 client key", s.Name)
	rot, err := newRotator(r.pki)
	if err != nil {
		return nil, err
	}
	procs := &procSet{}
	defer procs.stopAll()
	peers, rows, api, stop, err := startLatencyPeers(ctx, r, procs, s)
	if stop != nil {
		defer stop()
	}
	if err != nil {
		return nil, err
	}
	for run := 0; run < r.opts.runs; run++ {
		deadline := time.Now().Add(runBound)
		for k := 0; k < r.opts.rotations; k++ {
			leaf, err := rot.next()
			if err != nil {
				return nil, err
			}
			for j := range peers {
				i := (k + j) % len(peers)
				if peers[i] == nil {
					continue
				}
				if time.Now().After(deadline) {
					failLate(peers, rows)
					break
				}
				err := peers[i].rotateOnce(ctx, api, leaf, rot.n)
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				if err != nil {
					rows[i].Err, peers[i] = err.Error(), nil
				}
			}
		}
		endRun(r, s, run, peers, rows)
	}
	for i := range rows {
		rows[i].Median = medianOf(rows[i].Runs)
	}
	stop()
	return rows, nil
}

// rotateOnce rotates p's certificate to leaf (the n-th rotation), times
// the first request after it and checks that the request was sent with
// leaf.
func (p *latencyPeer) rotateOnce(ctx context.Context, api standIn, leaf *pki.Leaf, n int) error {
	start := time.Now()
	if err := p.in.rotate(ctx, leaf, n); err != nil {
		return fmt.Errorf("rotation %d: %w", n, err)
	}
	reloaded := time.Now()
	offset, err := api.logSize()
	if err != nil {
		return err
	}
	err = getOK(ctx, p.client, p.in.url("/small"))
	took := time.Since(reloaded)
	if err != nil {
		return fmt.Errorf("first request after rotation %d: %w", n, err)
	}
	got, err := api.servedSerial(ctx, offset)
	if err != nil {
		return fmt.Errorf("first request after rotation %d: %w", n, err)
	}
	if want := certs.Serial(leaf.Cert); !sameSerial(got, want) {
		return fmt.Errorf("the first request after rotation %d was sent with certificate serial %s, not the new %s: the reload did not take the new certificate", n, got, want)
	}
	p.lat = append(p.lat, took)
	p.extra = append(p.extra, reloaded.Sub(start))
	return nil
}

// rotate gives the running peer leaf as its client certificate and returns
// once the peer uses it.
func (in *instance) rotate(ctx context.Context, leaf *pki.Leaf, n int) error {
	if in.reload == nil { // this proxy: it watches its folder
		if err := in.dropPair(leaf, n); err != nil {
			return err
		}
		return in.waitInUse(ctx, certs.Serial(leaf.Cert))
	}
	if err := in.pki.writeClient(leaf); err != nil {
		return err
	}
	return in.reload(ctx, in)
}

// dropPair puts leaf into this proxy's certificate folder as one file
// holding the certificate and its key (one rename: the proxy never sees
// half a pair), after removing the pair two rotations back, so that the
// folder holds what it holds during a real rotation: the pair in use and
// the new one (Payrails allows two active certificates).
func (in *instance) dropPair(leaf *pki.Leaf, n int) error {
	if len(in.pairs) >= 2 {
		for _, f := range in.pairs[0] {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		in.pairs = in.pairs[1:]
	}
	path := filepath.Join(in.pki.ClientDir, fmt.Sprintf("rotated-%04d.pem", n))
	data := append(append([]byte{}, leaf.CertPEM...), leaf.KeyPEM...)
	if err := writeAtomic(in.dir, path, data, 0o600); err != nil {
		return err
	}
	in.pairs = append(in.pairs, []string{path})
	return nil
}

// waitInUse polls this proxy's /certs until every upstream reports serial
// in use.
func (in *instance) waitInUse(ctx context.Context, serial string) error {
	c := &http.Client{Timeout: time.Second}
	return poll(ctx, reloadWait, in.Name+" taking certificate "+serial, func() (bool, string, error) {
		got, err := inUseSerials(c, "http://"+in.admin+"/certs")
		if err != nil {
			return false, err.Error(), nil
		}
		for _, s := range got {
			if !sameSerial(s, serial) {
				return false, fmt.Sprintf("/certs in_use serials %v", got), nil
			}
		}
		return len(got) > 0, fmt.Sprintf("/certs in_use serials %v", got), nil
	})
}

// inUseSerials reads the in_use serial of every upstream from /certs.
func inUseSerials(c *http.Client, url string) ([]string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return parseInUse(resp.Body)
}

// parseInUse reads the /certs JSON (one report per upstream) and returns
// each upstream's in_use serial, "" for one with none.
func parseInUse(r io.Reader) ([]string, error) {
	var reports []struct {
		Upstream string `json:"upstream"`
		InUse    *struct {
			Serial string `json:"serial"`
		} `json:"in_use"`
	}
	if err := json.NewDecoder(r).Decode(&reports); err != nil {
		return nil, fmt.Errorf("decoding /certs: %w", err)
	}
	out := make([]string, len(reports))
	for i, rep := range reports {
		if rep.InUse != nil {
			out[i] = rep.InUse.Serial
		}
	}
	return out, nil
}

// sameSerial compares two hexadecimal serials as numbers: case and leading
// zeros aside (nginx's $ssl_client_serial and this proxy's serials are
// both upper-case hex, one byte per two digits or not).
func sameSerial(a, b string) bool {
	norm := func(s string) string { return strings.TrimLeft(strings.ToUpper(strings.TrimSpace(s)), "0") }
	return a != "" && norm(a) == norm(b)
}
