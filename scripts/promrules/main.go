// promrules checks Prometheus rule files as `promtool check rules` does, without building all of
// promtool: Prometheus' own rulefmt parses and validates each file (every expr through the PromQL
// parser, every label and annotation template), then rules of one name with equal labels are
// reported as duplicates (promtool's default lint). scripts/peers.sh builds it into .peers/promrules/.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// wrapper is set by peers.sh to a digest of this file, so an edited wrapper is rebuilt.
var wrapper = "unknown"

func main() {
	if len(os.Args) == 2 && os.Args[1] == "--version" {
		fmt.Printf("promrules: prometheus %s, wrapper %s\n", prometheusVersion(), wrapper)
		return
	}
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: promrules RULE_FILE... | --version")
		os.Exit(2)
	}
	// promtool's defaults: no experimental functions, UTF-8 metric names allowed.
	p := parser.NewParser(parser.Options{})
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	failed := false
	for _, f := range os.Args[1:] {
		fmt.Println("Checking", f)
		rgs, errs := rulefmt.ParseFile(f, false, model.UTF8Validation, p, logger)
		if errs == nil {
			errs = duplicates(rgs)
		}
		if errs != nil {
			failed = true
			fmt.Fprintln(os.Stderr, "  FAILED:")
			for _, e := range errs {
				fmt.Fprintln(os.Stderr, e.Error())
			}
			continue
		}
		n := 0
		for _, g := range rgs.Groups {
			n += len(g.Rules)
		}
		fmt.Printf("  SUCCESS: %d rules found\n", n)
	}
	if failed {
		os.Exit(1)
	}
}

// duplicates is promtool's duplicate-rule lint: two rules of one name whose group and rule labels
// are equal would fire or record as the same series.
func duplicates(rgs *rulefmt.RuleGroups) []error {
	seen := map[string]bool{}
	var errs []error
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			name := r.Alert
			if name == "" {
				name = r.Record
			}
			ls := model.LabelSet{}
			for k, v := range g.Labels {
				ls[model.LabelName(k)] = model.LabelValue(v)
			}
			for k, v := range r.Labels {
				ls[model.LabelName(k)] = model.LabelValue(v)
			}
			key := name + ls.String()
			if seen[key] {
				errs = append(errs, fmt.Errorf("group %q: duplicate rule %s", g.Name, key))
			}
			seen[key] = true
		}
	}
	return errs
}

func prometheusVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, d := range info.Deps {
			if d.Path == "github.com/prometheus/prometheus" {
				return d.Version
			}
		}
	}
	return "unknown"
}
