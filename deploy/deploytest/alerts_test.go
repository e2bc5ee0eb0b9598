package deploytest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/mtlsproxy/payrails-mtls-proxy/internal/interop"
	"go.yaml.in/yaml/v3"
)

const (
	alertsFile     = "deploy/prometheus/alerts.yaml"
	alertTestsFile = "deploy/prometheus/alerts_test.yaml"
)

// ruleFile is the part of a Prometheus rule file these tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadRules(t testing.TB) []rule {
	t.Helper()
	var f ruleFile
	if err := yaml.Unmarshal(readRepo(t, alertsFile), &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// alertTests is the part of promtool's unit test file these tests read.
type alertTests struct {
	Tests []struct {
		Name          string `yaml:"name"`
		AlertRuleTest []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestAlertRules runs Prometheus' own checker and unit tests on the rules.
func TestAlertRules(t *testing.T) {
	promtool := interop.Tool(t, "promtool")
	if out, err := runTool(t, root, promtool, "check", "rules", alertsFile); err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", alertsFile, err, out)
	}
	dir := t.TempDir()
	tests := withDescriptions(t, loadRules(t), readRepo(t, alertTestsFile))
	for name, data := range map[string][]byte{"alerts.yaml": readRepo(t, alertsFile), "alerts_test.yaml": tests} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := runTool(t, dir, promtool, "test", "rules", "alerts_test.yaml"); err != nil {
		t.Fatalf("promtool test rules %s (descriptions filled in from %s): %v\n%s", alertTestsFile, alertsFile, err, out)
	}
}

var labelRef = regexp.MustCompile(`\{\{\s*\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// withDescriptions returns the unit test file with each expected alert's
// description, where the file leaves it out, filled in from the rule: its
// {{ $labels.X }} replaced by the expected label X. A description that uses
// a label the alert does not carry, or any other template, is an error
// (promtool would render "<no value>" for the first).
func withDescriptions(t *testing.T, rules []rule, data []byte) []byte {
	t.Helper()
	desc := map[string]string{}
	for _, r := range rules {
		desc[r.Alert] = r.Annotations["description"]
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", alertTestsFile, err)
	}
	for _, tc := range asList(doc["tests"]) {
		for _, art := range asList(asMap(tc)["alert_rule_test"]) {
			name, _ := asMap(art)["alertname"].(string)
			for _, exp := range asList(asMap(art)["exp_alerts"]) {
				e := asMap(exp)
				ann := asMap(e["exp_annotations"])
				if ann == nil {
					ann = map[string]any{}
					e["exp_annotations"] = ann
				}
				if _, given := ann["description"]; given || desc[name] == "" {
					continue
				}
				labels := asMap(e["exp_labels"])
				text := labelRef.ReplaceAllStringFunc(desc[name], func(ref string) string {
					l := labelRef.FindStringSubmatch(ref)[1]
					v, ok := labels[l]
					if !ok {
						t.Errorf("%s: the description of %s uses {{ $labels.%s }}, but the alert has no label %s (labels %v)",
							alertsFile, name, l, l, labels)
					}
					return fmt.Sprint(v)
				})
				if strings.Contains(text, "{{") {
					t.Errorf("%s: the description of %s has a template other than {{ $labels.X }}; put {{ $value }} in the summary", alertsFile, name)
				}
				ann["description"] = text
			}
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }
func asList(v any) []any         { l, _ := v.([]any); return l }

// TestAlertRulesShape: every alert has a severity that routes (critical or
// warning), a summary and a description, and unit tests in which it fires
// and in which it stays quiet; every tested alert exists.
func TestAlertRulesShape(t *testing.T) {
	rules := loadRules(t)
	var tests alertTests
	if err := yaml.Unmarshal(readRepo(t, alertTestsFile), &tests); err != nil {
		t.Fatalf("%s: %v", alertTestsFile, err)
	}
	fires, quiet := map[string]int{}, map[string]int{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname]++
			} else {
				quiet[a.Alertname]++
			}
		}
	}
	var names []string
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		names = append(names, r.Alert)
		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: %s has severity %q, want critical or warning", alertsFile, r.Alert, s)
		}
		for _, a := range []string{"summary", "description"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: %s has no %s annotation", alertsFile, r.Alert, a)
			}
		}
		if fires[r.Alert] == 0 {
			t.Errorf("%s: no test in which %s fires", alertTestsFile, r.Alert)
		}
		if quiet[r.Alert] == 0 {
			t.Errorf("%s: no test in which %s stays quiet (an alert_rule_test without exp_alerts)", alertTestsFile, r.Alert)
		}
	}
	for name := range fires {
		if !slices.Contains(names, name) {
			t.Errorf("%s tests %s, which %s does not define", alertTestsFile, name, alertsFile)
		}
	}
	for name := range quiet {
		if !slices.Contains(names, name) {
			t.Errorf("%s tests %s, which %s does not define", alertTestsFile, name, alertsFile)
		}
	}
	if len(names) < 7 {
		t.Errorf("%s defines %d alerts, want at least the 7 of issue 18: %v", alertsFile, len(names), names)
	}
}
