package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/mtlsproxy/payrails-mtls-proxy/certs"
)

func init() {
	register(command{name: "csr", summary: "make domain.key and domain.csr for the Payrails dashboard (what the guide's openssl command does)",
		order: 30, run: runCSR})
}

// csrFlags are csr's command line.
type csrFlags struct {
	country, state, org, company, env, commonName string
	outDir, passFile, keyType, keyURI             string
	force                                         bool
}

func (f *csrFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.country, "country", "", "country, ISO 3166-1 alpha-2 `code`: DE, GB (not UK), US...")
	fs.StringVar(&f.state, "state", "", "state or province, full `name`: Berlin")
	fs.StringVar(&f.org, "org", "", "organization, the merchant's legal `name`: \"Acme GmbH\"")
	fs.StringVar(&f.company, "company", "", "your `company` in Payrails' API host (acme in api.acme.payrails.io), with --env")
	fs.StringVar(&f.env, "env", "", "Payrails `environment`: live or staging, with --company")
	fs.StringVar(&f.commonName, "common-name", "", "the Common Name `HOST` itself, instead of --company and --env")
	fs.StringVar(&f.outDir, "out-dir", ".", "`folder` to write domain.key and domain.csr into")
	fs.StringVar(&f.passFile, "key-passphrase-file", "", "encrypt domain.key with the passphrase on the first line of this `file`")
	fs.StringVar(&f.keyType, "key-type", string(certs.KeyRSA4096), "rsa4096 (what Payrails asks for) or ecdsa-p256")
	fs.BoolVar(&f.force, "force", false, "overwrite an existing domain.key (its certificate becomes useless)")
	fs.StringVar(&f.keyURI, "key-uri", "", "make the RSA-4096 key inside this PKCS#11 token instead of domain.key: "+
		"`pkcs11:token=T;object=NAME?module-path=LIB&pin-source=file:PIN` (pkcs11 build); only domain.csr is written")
}

// csrRequest is what the flags ask for, validated.
type csrRequest struct {
	subject    certs.Subject
	keyType    certs.KeyType
	passphrase []byte
}

func runCSR(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("csr", flag.ContinueOnError)
	var f csrFlags
	f.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: payrails-mtls-proxy csr --country DE --state Berlin --org \"Acme GmbH\" "+
			"(--company acme --env live|staging | --common-name HOST) [flags]")
		fmt.Fprintln(fs.Output(), "\nMakes a private key (domain.key, mode 0600) and a certificate signing request (domain.csr)")
		fmt.Fprintln(fs.Output(), "to upload in the Payrails dashboard, as `openssl req -new -newkey rsa:4096 -nodes` does.")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	req, err := f.request()
	if err != nil {
		printErrors(stderr, "csr", err)
		return exitUsage
	}
	if f.keyURI != "" {
		return tokenCSR(f, req, stdout, stderr)
	}
	keyPath := filepath.Join(f.outDir, certs.KeyFileName)
	// Before spending seconds on a key: the names must be free (or, with
	// --force, regular files), never symbolic links.
	for _, p := range []string{keyPath, filepath.Join(f.outDir, certs.CSRFileName)} {
		err := certs.CheckPlace(p, f.force || p != keyPath)
		if errors.Is(err, certs.ErrExists) {
			refuseOverwrite(stderr, keyPath)
			return exitFailure
		}
		if err != nil {
			fmt.Fprintf(stderr, "csr: %v\n", err)
			return exitFailure
		}
	}
	if req.keyType == certs.KeyRSA4096 {
		fmt.Fprintln(stderr, "csr: generating an RSA-4096 key, this takes a few seconds...")
	}
	c, err := certs.NewCSR(req.subject, req.keyType, req.passphrase)
	if err != nil {
		printErrors(stderr, "csr", err)
		return exitFailure
	}
	written, csrPath, err := c.WriteFiles(f.outDir, f.force)
	if errors.Is(err, certs.ErrExists) { // made by someone else while the key was generated
		refuseOverwrite(stderr, keyPath)
		return exitFailure
	}
	if err != nil {
		fmt.Fprintf(stderr, "csr: %v\n", err)
		return exitFailure
	}
	printCSR(stdout, c, csrOutput{keyPath: written, csrPath: csrPath, outDir: f.outDir, passFile: f.passFile})
	return exitOK
}

// request validates the flags, reporting every problem at once.
func (f *csrFlags) request() (csrRequest, error) {
	var (
		req  csrRequest
		errs []error
		err  error
	)
	cn, hostErr := f.host()
	if hostErr != nil {
		errs = append(errs, hostErr)
	}
	req.subject = certs.Subject{Country: f.country, State: f.state, Organization: f.org, CommonName: cn}
	if req.subject, err = req.subject.Normalize(); err != nil {
		errs = append(errs, withFlags(err, hostErr != nil)...)
	}
	if req.keyType, err = certs.ParseKeyType(f.keyType); err != nil {
		errs = append(errs, fmt.Errorf("--key-type: %w", err))
	}
	if f.passFile != "" {
		req.passphrase, err = certs.Passphrase{File: f.passFile}.Read()
		if err == nil && len(req.passphrase) == 0 {
			err = fmt.Errorf("the first line of %s is empty; write the passphrase there, or leave out "+
				"--key-passphrase-file for an unencrypted key (as openssl -nodes)", f.passFile)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("--key-passphrase-file: %w", err))
		}
	}
	return req, errors.Join(errs...)
}

// host returns the Common Name: --common-name, or computed from --company
// and --env as Payrails' guide gives it. An empty result with a nil error
// leaves the complaint to Subject.Normalize.
func (f *csrFlags) host() (string, error) {
	switch {
	case f.commonName != "" && (f.company != "" || f.env != ""):
		return "", errors.New("give either --common-name HOST or --company with --env, not both")
	case f.commonName != "":
		return f.commonName, nil
	case f.company == "" || f.env == "":
		return "", errors.New("the Common Name is missing: give --company acme --env live (or staging), " +
			"or --common-name HOST")
	}
	env, envErr := certs.ParseEnvironment(f.env)
	if envErr != nil {
		envErr = fmt.Errorf("--env: %w", envErr)
	}
	company, companyErr := certs.NormalizeCompany(f.company)
	if companyErr != nil {
		companyErr = fmt.Errorf("--company: %w", companyErr)
	}
	if err := errors.Join(envErr, companyErr); err != nil {
		return "", err
	}
	return certs.APIHost(company, env)
}

// subjectFlags maps the fields of certs.Subject to csr's flags.
var subjectFlags = map[string]string{certs.FieldCountry: "--country", certs.FieldState: "--state",
	certs.FieldOrganization: "--org", certs.FieldCommonName: "--common-name"}

// withFlags prefixes each subject problem with its flag. A common name
// that could not be computed was reported by host already, so its second
// complaint is dropped.
func withFlags(err error, cnReported bool) []error {
	errs := []error{err}
	var j interface{ Unwrap() []error } // errors.Join's result
	if errors.As(err, &j) {
		errs = j.Unwrap()
	}
	var out []error
	for _, e := range errs {
		var se *certs.SubjectError
		if errors.As(e, &se) {
			if se.Field == certs.FieldCommonName && cnReported {
				continue
			}
			e = fmt.Errorf("%s: %w", subjectFlags[se.Field], e)
		}
		out = append(out, e)
	}
	return out
}

func printErrors(w io.Writer, cmd string, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(w, "%s: %s\n", cmd, line)
	}
}

func refuseOverwrite(w io.Writer, keyPath string) {
	fmt.Fprintf(w, "csr: refusing to overwrite %s: it may be the private key of a certificate already issued, and "+
		"that certificate is useless without it (the key cannot be recovered).\n"+
		"csr: move it away first (mv %s %s.old), choose another --out-dir, or give --force to overwrite it.\n",
		keyPath, keyPath, keyPath)
}

// csrOutput is where csr wrote its files.
type csrOutput struct {
	keyPath, csrPath, outDir, passFile string
}

// printCSR says what was written and what to do next, in the order of
// Payrails' guide.
func printCSR(w io.Writer, c *certs.CSR, o csrOutput) {
	protection := "unencrypted, as openssl -nodes"
	if c.Encrypted {
		protection = "encrypted with the passphrase in " + o.passFile
	}
	fmt.Fprintf(w, "Wrote %s  (%s private key, %s, mode 0600)\n", o.keyPath, keyTypeName(c.KeyType), protection)
	fmt.Fprintf(w, "Wrote %s  (certificate signing request)\n\n", o.csrPath)
	fmt.Fprintf(w, "Subject: %s\n", c.Subject)
	host, isPayrails := certs.ParsePayrailsHost(c.Subject.CommonName)
	where := "in the Payrails dashboard"
	if isPayrails {
		fmt.Fprintf(w, "         the Common Name is the %s\n", host)
		where = fmt.Sprintf("in the Payrails dashboard (%s environment)", host.Env)
	} else {
		fmt.Fprintf(w, "Warning: %s is not a Payrails API host (live api.<company>.payrails.io, staging "+
			"<company>-api.staging.payrails.io); fine for a test CA, not for Payrails.\n", c.Subject.CommonName)
	}
	fmt.Fprintln(w, "\nNext steps:")
	fmt.Fprintf(w, "  1. Upload %s %s, page mTLS Certificates.\n", certs.CSRFileName, where)
	fmt.Fprintf(w, "  2. Download the certificate it issues and save it as %s, next to %s.\n",
		filepath.Join(o.outDir, certs.CertFileName), o.keyPath)
	fmt.Fprintf(w, "  3. Check the pair: payrails-mtls-proxy check --cert-dir %s%s%s\n", o.outDir, passFlag(o.passFile), remoteFlag(host, isPayrails))
	fmt.Fprintf(w, "  4. Put %s and %s in the sidecar's certificate folder (key mode 0600); keep a backup of the key.\n",
		certs.CertFileName, certs.KeyFileName)
	if c.Encrypted {
		fmt.Fprintf(w, "     The sidecar needs the passphrase too: --key-passphrase-file %s (or PAYRAILS_PROXY_KEY_PASSPHRASE).\n", o.passFile)
	}
	fmt.Fprintf(w, "Never use %s as the certificate: it is only the request, and OpenSSL and curl fail on it with "+
		"\"PEM routines ... NO_START_LINE\".\n", certs.CSRFileName)
}

func keyTypeName(kt certs.KeyType) string {
	if kt == certs.KeyECDSAP256 {
		return "ECDSA P-256"
	}
	return "RSA-4096"
}

func passFlag(passFile string) string {
	if passFile == "" {
		return ""
	}
	return " --key-passphrase-file " + passFile
}

func remoteFlag(h certs.PayrailsHost, ok bool) string {
	if !ok {
		return ""
	}
	return " --remote https://" + h.Host
}

// tokenCSR is csr --key-uri: the RSA-4096 key is made inside the token
// (sensitive, never extractable) and only domain.csr is written.
func tokenCSR(f csrFlags, req csrRequest, stdout, stderr io.Writer) int {
	var errs []error
	p, err := keyURIFlag(f.keyURI)
	switch {
	case err != nil:
		errs = append(errs, err)
	case p.Object == "":
		errs = append(errs, errors.New("--key-uri must name the new key: add ;object=NAME to the URI's path "+
			"(a label such as client-2026; the certificate is later paired with it by public key)"))
	}
	if req.keyType != certs.KeyRSA4096 {
		errs = append(errs, errors.New("--key-type: with --key-uri the key is RSA-4096, what Payrails asks for; leave --key-type out"))
	}
	if f.passFile != "" || f.force {
		errs = append(errs, errors.New("--key-passphrase-file and --force are for key files; with --key-uri the key stays in "+
			"the token, protected by its PIN, and a key in a token is never replaced"))
	}
	if err := errors.Join(errs...); err != nil {
		printErrors(stderr, "csr", err)
		return exitUsage
	}
	if err := certs.CheckPlace(filepath.Join(f.outDir, certs.CSRFileName), true); err != nil {
		fmt.Fprintf(stderr, "csr: %v\n", err)
		return exitFailure
	}
	tok, err := certs.OpenTokenForWriting(p, nil)
	if err != nil {
		fmt.Fprintf(stderr, "csr: %v\n", err)
		return exitFailure
	}
	defer tok.Close()
	fmt.Fprintln(stderr, "csr: generating an RSA-4096 key inside the token, this takes a few seconds...")
	key, keyURI, err := tok.GenerateRSA(p.Object, 4096)
	if err != nil {
		fmt.Fprintf(stderr, "csr: %v\n", err)
		return exitFailure
	}
	c, err := certs.NewTokenCSR(req.subject, key)
	if err != nil {
		printErrors(stderr, "csr", err)
		return exitFailure
	}
	csrPath, err := c.WriteRequest(f.outDir)
	if err != nil {
		fmt.Fprintf(stderr, "csr: %v\n", err)
		return exitFailure
	}
	printTokenCSR(stdout, c, keyURI, csrPath, f.outDir)
	return exitOK
}

// printTokenCSR says what was made and what to do next.
func printTokenCSR(w io.Writer, c *certs.CSR, keyURI, csrPath, outDir string) {
	fmt.Fprintf(w, "Made an RSA-4096 key inside the token: %s\n", keyURI)
	fmt.Fprintln(w, "  (sensitive and never extractable: no key file was written, the key cannot leave the token)")
	fmt.Fprintf(w, "Wrote %s  (certificate signing request)\n\n", csrPath)
	fmt.Fprintf(w, "Subject: %s\n", c.Subject)
	host, isPayrails := certs.ParsePayrailsHost(c.Subject.CommonName)
	where := "in the Payrails dashboard"
	if isPayrails {
		fmt.Fprintf(w, "         the Common Name is the %s\n", host)
		where = fmt.Sprintf("in the Payrails dashboard (%s environment)", host.Env)
	} else {
		fmt.Fprintf(w, "Warning: %s is not a Payrails API host (live api.<company>.payrails.io, staging "+
			"<company>-api.staging.payrails.io); fine for a test CA, not for Payrails.\n", c.Subject.CommonName)
	}
	cert := filepath.Join(outDir, certs.CertFileName)
	fmt.Fprintln(w, "\nNext steps:")
	fmt.Fprintf(w, "  1. Upload %s %s, page mTLS Certificates.\n", certs.CSRFileName, where)
	fmt.Fprintf(w, "  2. Download the certificate it issues and save it as %s.\n", cert)
	fmt.Fprintf(w, "  3. Check it with the key in the token: payrails-mtls-proxy check --cert %s --key-uri '%s'%s\n",
		cert, keyURI, remoteFlag(host, isPayrails))
	fmt.Fprintln(w, "  4. Put the certificate in the sidecar's certificate folder; with key_uri naming the token (no object=),")
	fmt.Fprintln(w, "     it is paired with this key by public key. Nothing else to copy: the key stays in the token.")
	fmt.Fprintf(w, "Never use %s as the certificate: it is only the request, and OpenSSL and curl fail on it with "+
		"\"PEM routines ... NO_START_LINE\".\n", certs.CSRFileName)
}
