package grafana

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Dashboard is pwmesh.json as shipped.
//
//go:embed pwmesh.json
var Dashboard []byte

// Query is one PromQL expression of the dashboard and where it is.
type Query struct {
	Where string // "panel <title>" or "variable <name>"
	Expr  string
}

// panel is the part of a Grafana panel the queries live in; rows hold
// their panels when collapsed.
type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

type model struct {
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// Queries lists every PromQL expression of a dashboard in the Grafana
// JSON model: each panel's targets (rows' nested panels included) and the
// metric of each label_values(...) query variable.
func Queries(dashboard []byte) ([]Query, error) {
	var m model
	if err := json.Unmarshal(dashboard, &m); err != nil {
		return nil, fmt.Errorf("grafana: dashboard: %w", err)
	}
	var out []Query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				if t.Expr != "" {
					out = append(out, Query{Where: "panel " + p.Title, Expr: t.Expr})
				}
			}
			walk(p.Panels)
		}
	}
	walk(m.Panels)
	for _, v := range m.Templating.List {
		if v.Type != "query" || len(v.Query) == 0 {
			continue
		}
		// A string, or (newer Grafana) an object with a "query" field.
		var q string
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var obj struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				return nil, fmt.Errorf("grafana: variable %s: query is neither a string nor an object", v.Name)
			}
			q = obj.Query
		}
		if expr, ok := labelValuesSelector(q); ok {
			out = append(out, Query{Where: "variable " + v.Name, Expr: expr})
		}
	}
	return out, nil
}

var labelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)

// labelValuesSelector is the series selector of Grafana's
// label_values(selector, label); label_values(label) has none.
func labelValuesSelector(q string) (string, bool) {
	m := labelValues.FindStringSubmatch(q)
	if m == nil {
		return "", false
	}
	return m[1], true
}

var (
	// Quoted strings: label values and the arguments of label_replace.
	promString = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	// Label matchers, once strings are gone.
	promMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	// Range and subquery durations: [5m], [$__rate_interval], [1h:5m].
	promRange = regexp.MustCompile(`\[[^\[\]]*\]`)
	// Label lists of aggregations and vector matching.
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promIdent    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// keywords are PromQL's words that are not metric names where they stand
// without a parenthesis after them.
var keywords = map[string]bool{
	"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "offset": true, "bool": true, "inf": true, "nan": true,
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true, "atan2": true,
}

// MetricNames returns, sorted, the metric names a PromQL expression
// selects: identifiers that are neither functions (followed by a
// parenthesis), keywords, label names or values, durations nor Grafana
// variables ($name). Histogram series keep their suffix (_bucket, _sum,
// _count).
func MetricNames(expr string) []string {
	s := promString.ReplaceAllString(expr, `""`)
	s = promMatchers.ReplaceAllString(s, " ")
	for prev := ""; prev != s; { // nested subqueries
		prev = s
		s = promRange.ReplaceAllString(s, " ")
	}
	s = promGrouping.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range promIdent.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 {
			if c := s[loc[0]-1]; c == '$' || c == '.' || (c >= '0' && c <= '9') {
				continue // a variable, or the exponent or unit of a number
			}
		}
		if strings.HasPrefix(strings.TrimLeft(s[loc[1]:], " \t\n"), "(") || keywords[strings.ToLower(name)] {
			continue
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// HistogramBase is name without the suffix of a histogram's series
// (_bucket, _sum, _count), and whether it had one.
func HistogramBase(name string) (string, bool) {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			return base, true
		}
	}
	return name, false
}
