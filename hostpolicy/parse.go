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
	if diags.HasErrors() {
		return nil, diags
	}
	for _, p := range policies {
		Normalize(p)
	}
	return policies, diags
}

// ParseEvent is Parse for one PolicyService request. A DELETED event needs
// only a name; its spec is not validated (karmor resends the whole policy).
func ParseEvent(data []byte) (*Event, Diagnostics) {
	return parseEvent(data, KindHostPolicy)
}

func parseEvent(data []byte, kind string) (*Event, Diagnostics) {
	ev, diags := decodeEvent(data, kind)
	if ev == nil || ev.Policy == nil || diags.HasErrors() {
		return nil, diags
	}
	if ev.Type == "DELETED" {
		var check diagSink
		check.origin = &ev.Policy.Origin
		switch name := ev.Policy.Metadata.Name; {
		case name == "":
			check.errorf("metadata.name", "missing")
		case len(name) > 253 || !policyName.MatchString(name):
			check.errorf("metadata.name", "%q is not a valid name", name)
		}
		if check.out.HasErrors() {
			return nil, append(diags, check.out...)
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
