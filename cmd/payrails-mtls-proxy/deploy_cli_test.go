package main

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/config"
)

// deployInvocation is a command line of the binary found in a deploy file.
type deployInvocation struct {
	where string // file:line
	sub   string
	flags []string
}

var (
	deployTokenSep = regexp.MustCompile("[\\s\\[\\],\"'`()]+")
	deployFlag     = regexp.MustCompile(`^--[a-z][a-z0-9-]*`)
	deployEnvVar   = regexp.MustCompile(`PAYRAILS_PROXY_[A-Z0-9_]*`)
	deployHelpFlag = regexp.MustCompile(`(?m)^\s+-([a-z][a-z0-9-]*)`)
)

func deployIsBinary(tok string) bool {
	base, _, _ := strings.Cut(path.Base(tok), ":") // an image reference may carry a tag
	return base == "payrails-mtls-proxy"
}

// deployFindInvocations finds subcommands in tokens: after the binary's name (or
// Docker's CMD), first in a YAML list (Kubernetes args), or followed by a
// --flag. The flags up to the end of that command belong to it.
func deployFindInvocations(tokens []string, where string, listStart bool, subs map[string]bool) []deployInvocation {
	var out []deployInvocation
	for i, tok := range tokens {
		if !subs[tok] {
			continue
		}
		prev, next := "", ""
		if i > 0 {
			prev = tokens[i-1]
		}
		if i+1 < len(tokens) {
			next = tokens[i+1]
		}
		if !deployIsBinary(prev) && prev != "CMD" && (i != 0 || !listStart) && !deployFlag.MatchString(next) {
			continue
		}
		inv := deployInvocation{where: where, sub: tok}
		for _, t := range tokens[i+1:] {
			if deployIsBinary(t) || t == "&&" || t == "||" || t == ";" || t == "|" {
				break
			}
			if f := deployFlag.FindString(t); f != "" {
				inv.flags = append(inv.flags, f)
			}
		}
		out = append(out, inv)
	}
	return out
}

// deployYAMLLists returns every list of strings in a YAML tree.
func deployYAMLLists(v any, out *[][]string) {
	switch v := v.(type) {
	case map[string]any:
		for _, c := range v {
			deployYAMLLists(c, out)
		}
	case []any:
		var ss []string
		for _, c := range v {
			if s, ok := c.(string); ok {
				ss = append(ss, s)
			}
			deployYAMLLists(c, out)
		}
		if len(ss) == len(v) {
			*out = append(*out, ss)
		}
	}
}

// deployUsage collects the command lines and PAYRAILS_PROXY_* names used in
// the deploy files, each with the first place it was seen.
func deployUsage(t *testing.T) (invs []deployInvocation, envs map[string]string) {
	t.Helper()
	subs := map[string]bool{}
	for _, c := range commands() {
		subs[c.name] = true
	}
	envs = map[string]string{}
	for _, f := range deployFiles(t) {
		n := 0
		for line := range strings.Lines(string(f.data)) {
			n++
			where := fmt.Sprintf("%s:%d", f.rel, n)
			invs = append(invs, deployFindInvocations(deployTokenSep.Split(line, -1), where, false, subs)...)
			for _, e := range deployEnvVar.FindAllString(line, -1) {
				if strings.HasSuffix(e, "_") {
					continue // a prefix, as in PAYRAILS_PROXY_LIVE_* or PAYRAILS_PROXY_<NAME>_...
				}
				if _, seen := envs[e]; !seen {
					envs[e] = where
				}
			}
		}
		if !deployIsYAML(f.rel) {
			continue
		}
		docs, _ := deployYAMLDocs(f.data)
		var lists [][]string
		for _, d := range docs {
			deployYAMLLists(d, &lists)
		}
		for _, l := range lists {
			invs = append(invs, deployFindInvocations(l, f.rel+" (a YAML list)", true, subs)...)
		}
	}
	return invs, envs
}

// deployCommandHelp returns what `<sub> -h` prints and the flags it lists.
func deployCommandHelp(t *testing.T, sub string) (string, map[string]bool) {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{sub, "-h"}, &out, &errOut); code != exitOK {
		t.Fatalf("%s -h: exit code %d\n%s", sub, code, errOut.String())
	}
	help := out.String() + errOut.String()
	flags := map[string]bool{}
	for _, m := range deployHelpFlag.FindAllStringSubmatch(help, -1) {
		flags["--"+m[1]] = true
	}
	return help, flags
}

// deploySettingsDoc is where the table of serve settings (flag, environment,
// config key, default) is documented; README.md links it.
const deploySettingsDoc = "docs/configuration.md"

// deployDocEnvFlags reads deploySettingsDoc's table of serve settings:
// environment variable (a regexp, for PAYRAILS_PROXY_<NAME>_...) to its flag,
// "" when the variable has none.
func deployDocEnvFlags(t *testing.T) map[*regexp.Regexp]string {
	t.Helper()
	rows := map[*regexp.Regexp]string{}
	cellEnv := regexp.MustCompile(`PAYRAILS_PROXY_[A-Z0-9_<>]+`)
	for line := range strings.Lines(string(deployRead(t, deploySettingsDoc))) {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(line, "|") {
			continue
		}
		flags := regexp.MustCompile("`(--[a-z][a-z0-9-]*)").FindAllStringSubmatch(cells[1], -1)
		envs := cellEnv.FindAllString(cells[2], -1)
		for i, e := range envs {
			flag := ""
			if len(flags) == len(envs) {
				flag = flags[i][1]
			}
			re := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(e), "<NAME>", "[A-Z0-9_]+") + "$")
			rows[re] = flag
		}
	}
	if len(rows) < 10 {
		t.Fatalf("%s: found %d PAYRAILS_PROXY_* rows in the table of serve settings; has its format changed?", deploySettingsDoc, len(rows))
	}
	return rows
}

// TestDeployCommandLines: every --flag the deploy files and the Dockerfile
// give a subcommand is in that subcommand's help, and every PAYRAILS_PROXY_*
// variable is one the table in deploySettingsDoc lists, whose flag serve has,
// and which the binary reads.
func TestDeployCommandLines(t *testing.T) {
	invs, envs := deployUsage(t)
	found := map[string]bool{}
	for _, inv := range invs {
		found[inv.where[:strings.IndexAny(inv.where, ": ")]+" "+inv.sub] = true
	}
	for _, want := range []string{"Dockerfile health", "Dockerfile serve", "deploy/docker-compose.yml health",
		"deploy/kubernetes/deployment.yaml serve", "deploy/systemd/payrails-mtls-proxy.service serve"} {
		if !found[want] {
			t.Errorf("no command line %q found; is the test's search still right?", want)
		}
	}
	helps := map[string]map[string]bool{}
	for _, inv := range invs {
		if helps[inv.sub] == nil {
			_, helps[inv.sub] = deployCommandHelp(t, inv.sub)
		}
		for _, f := range inv.flags {
			if !helps[inv.sub][f] {
				t.Errorf("%s: payrails-mtls-proxy %s has no flag %s", inv.where, inv.sub, f)
			}
		}
	}

	serveHelp, serveFlags := deployCommandHelp(t, "serve")
	read := map[string]bool{}
	record := func(k string) (string, bool) { read[k] = true; return "", false }
	if _, err := config.Parse(deployRead(t, "deploy/config.example.yaml"), "/etc/payrails-mtls-proxy/config.yaml",
		record, config.Overrides{}, false); err != nil {
		t.Fatal(err)
	}
	table := deployDocEnvFlags(t)
	for e, where := range envs {
		flag, listed := "", false
		for re, f := range table {
			if re.MatchString(e) {
				flag, listed = f, true
				break
			}
		}
		switch {
		case !listed:
			t.Errorf("%s: %s is not in %s's table of serve settings", where, e, deploySettingsDoc)
		case flag != "" && !serveFlags[flag]:
			t.Errorf("%s: %s maps to %s in %s, but serve has no such flag", where, e, flag, deploySettingsDoc)
		case !read[e] && !strings.Contains(serveHelp, e):
			t.Errorf("%s: %s is neither read by the configuration nor named in serve -h", where, e)
		}
	}
}

var (
	deployAddrPort = regexp.MustCompile(`\b(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost):(\d{1,5})(?::(\d{1,5}))?\b`)
	deployKeyPort  = regexp.MustCompile(`(?:containerPort|port):\s*"?(\d+)"?`)
	deployExpose   = regexp.MustCompile(`(?m)^EXPOSE\s+(.*)$`)
	deployURLs     = regexp.MustCompile(`https?://[^\s"',\])]+`)
)
