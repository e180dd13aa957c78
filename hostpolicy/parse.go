package hostpolicy

import (
	"bytes"
	"fmt"

	"gopkg.in/yaml.v3"
)

// Parse runs the front half of the pipeline on one file: decode every
// document, validate each, and normalize them when the whole file is clean.
// A file is accepted or rejected as a unit, so a half-valid file never
// replaces the last good version of that file.
func Parse(file string, data []byte) ([]*Policy, Diagnostics) {
	policies, diags := parse(file, data)
	return policies, limitDiagnostics(file, diags)
}

func parse(file string, data []byte) ([]*Policy, Diagnostics) {
	policies, diags := Decode(file, data)
	seen := map[string]*Policy{}
	for _, p := range policies {
		diags = append(diags, Validate(p)...)
		if first, dup := seen[p.Metadata.Name]; dup && p.Metadata.Name != "" {
			diags = append(diags, Diagnostic{File: file, Line: p.Origin.LineOf("metadata.name"), Path: "metadata.name",
				Msg: "policy " + p.Metadata.Name + " is already defined at line " + itoa(first.Origin.LineOf("metadata.name"))})
		}
		seen[p.Metadata.Name] = p
	}
	diags = append(diags, capFileRules(file, policies)...)
	if diags.HasErrors() {
		return nil, diags
	}
	for _, p := range policies {
		Normalize(p)
	}
	return policies, diags
}

// MaxDiagnostics is the most findings Parse and ParseEvent report for one
// input; the rest are counted in one last finding. A file of 84,000 unknown
// fields (or one unknown field in an entry aliased 100,000 times) made as
// many log lines and status entries.
const MaxDiagnostics = 100

func limitDiagnostics(file string, ds Diagnostics) Diagnostics {
	if len(ds) <= MaxDiagnostics {
		return ds
	}
	errs, warns := 0, 0
	for _, d := range ds[MaxDiagnostics:] {
		if d.Warning {
			warns++
		} else {
			errs++
		}
	}
	out := append(ds[:MaxDiagnostics:MaxDiagnostics], Diagnostic{File: file, Warning: errs == 0,
		Msg: fmt.Sprintf("and %d more errors and %d more warnings, not shown", errs, warns)})
	return out
}

// capFileRules refuses a file whose policies together exceed
// MaxRulesPerFile, at the policy that goes past it. A policy over the
// per-policy cap is already refused by Validate.
func capFileRules(file string, policies []*Policy) Diagnostics {
	total := 0
	for _, p := range policies {
		n := RulesOf(p)
		if n > policyRuleCap {
			continue
		}
		total += n
		if total > fileRuleCap {
			return Diagnostics{{File: file, Line: p.Origin.LineOf("spec"), Path: "spec",
				Msg: fmt.Sprintf("policy %s brings the file to %d rules, more than the limit of %d per file", p.Metadata.Name, total, fileRuleCap)}}
		}
	}
	return nil
}

// ParseEvent is Parse for one PolicyService request. A DELETED event needs
// only a name; its spec is not validated (karmor resends the whole policy).
func ParseEvent(data []byte) (*Event, Diagnostics) {
	return parseEvent(data, KindHostPolicy)
}

func parseEvent(data []byte, kind string) (*Event, Diagnostics) {
	ev, diags := parseEventAll(data, kind)
	return ev, limitDiagnostics("request", diags)
}

func parseEventAll(data []byte, kind string) (*Event, Diagnostics) {
	ev, diags := decodeEvent(data, kind)
	if ev == nil || ev.Policy == nil || diags.HasErrors() {
		return nil, diags
	}
	if ev.Type == "DELETED" {
		check := validator{sink: diagSink{origin: &ev.Policy.Origin}}
		check.name(ev.Policy.Metadata.Name)
		if check.sink.out.HasErrors() {
			return nil, append(diags, check.sink.out...)
		}
		return ev, diags
	}
	diags = append(diags, Validate(ev.Policy)...)
	if diags.HasErrors() {
		return nil, diags
	}
	// Keep the policy as the user wrote it, for writing it to a file; the
	// normalized form would spell out every inherited field.
	text, err := Render(ev.Policy)
	if err != nil {
		return nil, append(diags, Diagnostic{File: ev.Policy.Origin.File, Msg: err.Error()})
	}
	// Aliases are expanded by rendering: what is written must be readable
	// back as a policy file.
	if len(text) > MaxDocumentBytes {
		return nil, append(diags, Diagnostic{File: ev.Policy.Origin.File, Line: ev.Policy.Origin.Line,
			Msg: fmt.Sprintf("policy %s is %d bytes as YAML once its aliases are expanded; the limit of a policy file is %d",
				ev.Policy.Metadata.Name, len(text), MaxDocumentBytes)})
	}
	ev.YAML = text
	Normalize(ev.Policy)
	return ev, diags
}

// Render writes a policy as readable YAML.
func Render(p *Policy) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		return nil, fmt.Errorf("policy %s: render: %w", p.Metadata.Name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("policy %s: render: %w", p.Metadata.Name, err)
	}
	return b.Bytes(), nil
}
