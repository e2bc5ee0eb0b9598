package deploytest

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

const dashboardFile = "deploy/grafana/payrails-mtls-proxy.json"

// promExpr is one PromQL expression and where it was found.
type promExpr struct {
	where string
	expr  string
}

// alertExprs are the expressions of every rule in alerts.yaml.
func alertExprs(t testing.TB) []promExpr {
	t.Helper()
	var out []promExpr
	for _, r := range loadRules(t) {
		out = append(out, promExpr{alertsFile + ": " + r.Alert + r.Record, r.Expr})
	}
	return out
}

// dashboardExprs are the expressions of every panel target (rows' panels
// included) and of every query variable of the dashboard. A variable's
// label_values(SELECTOR, label) contributes its selector.
func dashboardExprs(t testing.TB) []promExpr {
	t.Helper()
	var d struct {
		Panels     []dashPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(readRepo(t, dashboardFile), &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []promExpr
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out = append(out, promExpr{fmt.Sprintf("%s: panel %q, target %s", dashboardFile, p.Title, tg.RefID), tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q) != nil {
			_ = json.Unmarshal(v.Query, &q.Query) // the older form: a plain string
		}
		where := fmt.Sprintf("%s: variable %s", dashboardFile, v.Name)
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("%s: query %q is not label_values(SELECTOR, LABEL); teach this test the new form", where, q.Query)
			continue
		}
		out = append(out, promExpr{where, m[1]})
	}
	return out
}

type dashPanel struct {
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"`
}

var (
	labelValues = regexp.MustCompile(`^\s*label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)
	grafanaVar  = regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-z]+)?\}?`)
)

// expandGrafana replaces Grafana's variables the way a query would see
// them: intervals become a duration, the dashboard's own variables a value.
func expandGrafana(expr string) string {
	return grafanaVar.ReplaceAllStringFunc(expr, func(v string) string {
		if strings.HasPrefix(strings.TrimLeft(v, "${"), "__") {
			return "5m"
		}
		return "value"
	})
}

// exported is what a scrape of the binary offers: each series name (a
// histogram's _bucket, _sum and _count) with its label names.
type exported map[string]map[string]bool

// targetLabels are the labels Prometheus' scrape adds; an expression may
// match and group by them although the binary does not export them.
var targetLabels = []string{"job", "instance", "namespace", "pod"}

// checkExpr parses expr with Prometheus' parser and returns what is wrong:
// a metric the binary does not export, a label matcher or by/on/ignoring
// label the metrics in question do not carry, a selector without a name.
func checkExpr(e promExpr, have exported) []string {
	ast, err := parser.NewParser(parser.Options{}).ParseExpr(expandGrafana(e.expr))
	if err != nil {
		return []string{fmt.Sprintf("%s: does not parse: %v\n%s", e.where, err, e.expr)}
	}
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, e.where+": "+fmt.Sprintf(format, args...))
	}
	parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			labels, ok := have[n.Name]
			switch {
			case n.Name == "":
				bad("selector %s has no metric name", n)
			case !ok:
				bad("metric %s is not one the binary exports (%s)", n.Name, near(n.Name, have))
			default:
				for _, m := range n.LabelMatchers {
					if m.Name != "__name__" && !labels[m.Name] && !slices.Contains(targetLabels, m.Name) {
						bad("%s has no label %q (it has %s)", n.Name, m.Name, keys(labels))
					}
				}
			}
		case *parser.AggregateExpr:
			if !n.Without {
				checkLabels(n.Grouping, "by", n.Expr, have, bad)
			}
		case *parser.BinaryExpr:
			if vm := n.VectorMatching; vm != nil && len(vm.MatchingLabels) > 0 {
				checkLabels(vm.MatchingLabels, "on/ignoring", n, have, bad)
			}
		}
		return nil
	})
	return problems
}

// checkLabels reports the names that no metric selected under n carries.
func checkLabels(names []string, what string, n parser.Node, have exported, bad func(string, ...any)) {
	avail := map[string]bool{}
	for _, l := range targetLabels {
		avail[l] = true
	}
	parser.Inspect(n, func(c parser.Node, _ []parser.Node) error {
		if vs, ok := c.(*parser.VectorSelector); ok {
			for l := range have[vs.Name] {
				avail[l] = true
			}
		}
		return nil
	})
	for _, l := range names {
		if !avail[l] {
			bad("%s label %q over %s: none of its metrics carries it (they have %s)", what, l, n, keys(avail))
		}
	}
}

func keys(m map[string]bool) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ", ")
}

// near lists the exported names that share the first three words of name,
// to make a typo obvious.
func near(name string, have exported) string {
	parts := strings.SplitN(name, "_", 4)
	prefix := strings.Join(parts[:min(3, len(parts))], "_")
	var out []string
	for n := range have {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "none starts with " + prefix
	}
	return "exported: " + strings.Join(out, ", ")
}

// TestCheckExprFails: the check finds what it is for. Without this, a
// check that accepted everything would pass the real test too.
func TestCheckExprFails(t *testing.T) {
	have := exported{
		"payrails_proxy_requests_total":                  {"upstream": true, "code": true, "method": true},
		"payrails_proxy_request_duration_seconds_bucket": {"upstream": true, "le": true},
	}
	for _, c := range []struct {
		expr string
		want string // "" means no problem
	}{
		{`sum by (upstream) (rate(payrails_proxy_requests_total{job=~"$job", upstream=~"$upstream"}[$__rate_interval]))`, ""},
		{`histogram_quantile(0.99, sum by (le) (rate(payrails_proxy_request_duration_seconds_bucket[5m])))`, ""},
		{`rate(payrails_proxy_requests_totl[5m])`, "payrails_proxy_requests_totl is not one the binary exports"},
		{`rate(payrails_proxy_made_up_total[5m])`, "payrails_proxy_made_up_total is not one the binary exports"},
		{`histogram_quantile(0.9, rate(payrails_proxy_request_duration_seconds[5m]))`, "payrails_proxy_request_duration_seconds is not one"},
		{`payrails_proxy_requests_total{status="5xx"}`, `has no label "status"`},
		{`sum by (kind) (payrails_proxy_requests_total)`, `label "kind" over`},
		{`payrails_proxy_requests_total / ignoring (kind) payrails_proxy_requests_total`, `label "kind" over`},
		{`{__name__=~"payrails_.*"}`, "has no metric name"},
		{`sum(rate(payrails_proxy_requests_total[5m])`, "does not parse"},
	} {
		got := strings.Join(checkExpr(promExpr{"test", c.expr}, have), "\n")
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("checkExpr(%s):\ngot  %q\nwant %q", c.expr, got, c.want)
		}
	}
}

// TestDashboardAndAlertMetrics: every expression of the dashboard and the
// alert rules parses, and names only metrics and labels that a running
// payrails-mtls-proxy exports, scraped after traffic that gives every
// vector metric a series.
func TestDashboardAndAlertMetrics(t *testing.T) {
	have := scrapeRunningProxy(t)
	exprs := append(dashboardExprs(t), alertExprs(t)...)
	if len(exprs) < 25 {
		t.Fatalf("found %d expressions, want the dashboard's panels and the alert rules; has the dashboard's format changed?", len(exprs))
	}
	for _, e := range exprs {
		for _, p := range checkExpr(e, have) {
			t.Error(p)
		}
	}
}

// TestDashboardLayout: the dashboard imports cleanly into Grafana: panels
// have unique ids, a title and a description, query the dashboard's
// datasource variable, and sit on the 24-column grid without overlapping.
func TestDashboardLayout(t *testing.T) {
	type grid struct{ H, W, X, Y int }
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			ID          int    `json:"id"`
			Type        string `json:"type"`
			Title       string `json:"title"`
			Description string `json:"description"`
			GridPos     grid   `json:"gridPos"`
			Datasource  *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(readRepo(t, dashboardFile), &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" {
		t.Errorf("%s has no uid: links to it would change at every import", dashboardFile)
	}
	ids := map[int]string{}
	var placed []grid
	for _, p := range d.Panels {
		if other, dup := ids[p.ID]; dup {
			t.Errorf("%s: panels %q and %q share id %d", dashboardFile, other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("%s: panel %q gridPos %+v is off the 24-column grid", dashboardFile, p.Title, g)
		}
		for _, o := range placed {
			if g.X < o.X+o.W && o.X < g.X+g.W && g.Y < o.Y+o.H && o.Y < g.Y+g.H {
				t.Errorf("%s: panel %q at %+v overlaps another at %+v", dashboardFile, p.Title, g, o)
			}
		}
		placed = append(placed, g)
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || p.Description == "" {
			t.Errorf("%s: panel %d (%q) needs a title and a description", dashboardFile, p.ID, p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("%s: panel %q does not query the ${datasource} variable", dashboardFile, p.Title)
		}
	}
}
