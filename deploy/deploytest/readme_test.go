package deploytest

import (
	"fmt"
	"strings"
	"testing"
)

// TestREADMEHelmInstall: the README's helm install command, run as helm
// template with the same arguments, renders a working gateway, and the
// address the README gives clients is that of the Service it renders.
func TestREADMEHelmInstall(t *testing.T) {
	c := newChart(t)
	readme := string(readRepo(t, "README.md"))
	_, section, ok := strings.Cut(readme, "\n## Install with Helm\n")
	if !ok {
		t.Fatal(`README.md has no "## Install with Helm" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var cmd string
	for line := range strings.Lines(strings.ReplaceAll(section, "\\\n", " ")) {
		if strings.HasPrefix(line, "helm install ") {
			cmd = line
		}
	}
	args, err := shellWords(cmd)
	if err != nil || len(args) < 4 {
		t.Fatalf("README.md's helm install command %q: %v", cmd, err)
	}
	args[1] = "template"
	ns := ""
	for i, a := range args {
		if a == "--namespace" && i+1 < len(args) {
			ns = args[i+1]
		}
	}
	out, err := c.runIn(t, root, args[1:]...) // its paths are the repository's
	if err != nil {
		t.Fatalf("README.md's helm install command, run as helm template: %v", err)
	}
	m := decode(t, out)
	checkGateway(t, m)
	svc := m.services[0]
	addr := fmt.Sprintf("%s.%s.svc:%d", svc.Name, ns, svc.Spec.Ports[0].Port)
	if !strings.Contains(section, "HTTP_PROXY=http://billing:PASSWORD@"+addr) {
		t.Errorf("README.md's Install with Helm does not give clients HTTP_PROXY=http://billing:PASSWORD@%s, the Service the command renders", addr)
	}
}

// shellWords splits a command line as a POSIX shell would for the quoting
// the README uses: words separated by blanks, '...' literal, "..." with
// backslash escapes.
func shellWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		switch ch := line[i]; {
		case ch == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", line)
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case ch == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) {
					i++
				}
				cur.WriteByte(line[i])
			}
			if i >= len(line) {
				return nil, fmt.Errorf("unterminated \" in %q", line)
			}
			inWord = true
		case ch == ' ' || ch == '\t' || ch == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
