package hostpolicy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// MaxDocumentBytes bounds one policy file or payload; larger input is rejected
// before parsing so a hostile PolicyService client cannot exhaust memory.
const MaxDocumentBytes = 1 << 20

// maxNodes bounds the work of walking one file or request, every document
// of it and every node reached through an alias counted: anchors do not
// cross documents, so a bound per document would let a file of many small
// alias bombs cost maxNodes each.
const maxNodes = 200000

// maxExpandedBytes bounds the text of the scalars walked in one file or
// request, aliases expanded: a long string aliased many times stays under
// maxNodes, and PolicyService renders what it accepts with its aliases
// expanded (a 400 KB request could render to a gigabyte).
const maxExpandedBytes = 4 << 20

// nodeCap and byteCap are maxNodes and maxExpandedBytes, lowered only by
// FuzzAliasShapes to reach them cheaply.
var nodeCap, byteCap = maxNodes, maxExpandedBytes

// walkBudget is what walking one file or request has cost so far, across
// its documents.
type walkBudget struct {
	nodes, bytes int
	reported     bool
}

func (b *walkBudget) exceeded() bool { return b.nodes > nodeCap || b.bytes > byteCap }

// Decode parses every YAML document in data (a policy file may hold several,
// separated by ---). Empty documents are skipped. Decoding checks structure and
// types only; call Validate for the semantic rules.
func Decode(file string, data []byte) ([]*Policy, Diagnostics) {
	if len(data) > MaxDocumentBytes {
		return nil, Diagnostics{{File: file, Msg: fmt.Sprintf("file is %d bytes; the limit is %d", len(data), MaxDocumentBytes)}}
	}
	var (
		policies []*Policy
		diags    Diagnostics
		budget   walkBudget
	)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			diags = append(diags, yamlError(file, err))
			return policies, diags
		}
		root := &doc
		if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
			root = root.Content[0]
		}
		if root.Kind == yaml.DocumentNode || isNull(root) {
			continue
		}
		p, ds := decodePolicy(file, root, false, &budget)
		diags = append(diags, ds...)
		if p != nil {
			policies = append(policies, p)
		}
		if budget.exceeded() {
			return policies, diags
		}
	}
	return policies, diags
}

// Event is one PolicyService request as karmor sends it: {"type","object"}.
type Event struct {
	Type   string // ADDED, MODIFIED or DELETED
	Policy *Policy
	YAML   []byte // ParseEvent: the policy as received, rendered as YAML
}

// DecodeEvent parses the JSON envelope that `karmor vm policy add|delete`
// sends. Keys match case-insensitively, as upstream's Go JSON decoding does;
// apiVersion and kind are absent on the wire and are filled in here.
func DecodeEvent(data []byte) (*Event, Diagnostics) {
	return decodeEvent(data, KindHostPolicy)
}

// decodeEvent is DecodeEvent for the RPC of one kind, which fills in a
// missing kind.
func decodeEvent(data []byte, kind string) (*Event, Diagnostics) {
	const file = "request"
	if len(data) > MaxDocumentBytes {
		return nil, Diagnostics{{File: file, Msg: fmt.Sprintf("payload is %d bytes; the limit is %d", len(data), MaxDocumentBytes)}}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Diagnostics{yamlError(file, err)}
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, Diagnostics{{File: file, Msg: "payload must be a JSON object {\"type\": ..., \"object\": ...}"}}
	}
	ev := &Event{}
	var object *yaml.Node
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch strings.ToLower(k.Value) {
		case "type":
			ev.Type = strings.ToUpper(v.Value)
		case "object":
			object = v
		}
	}
	switch ev.Type {
	case "ADDED", "MODIFIED", "DELETED":
	default:
		return nil, Diagnostics{{File: file, Path: "type", Msg: fmt.Sprintf("must be ADDED, MODIFIED or DELETED, not %q", ev.Type)}}
	}
	if object == nil || isNull(object) {
		return nil, Diagnostics{{File: file, Path: "object", Msg: "missing"}}
	}
	var budget walkBudget
	p, diags := decodePolicy(file, object, true, &budget)
	if p != nil {
		if p.APIVersion == "" {
			p.APIVersion = APIVersion
		}
		if p.Kind == "" {
			p.Kind = kind
		}
	}
	ev.Policy = p
	return ev, diags
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

func yamlError(file string, err error) Diagnostic {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	d := Diagnostic{File: file, Msg: msg}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		d.Line, _ = strconv.Atoi(m[1])
		d.Msg = strings.TrimSpace(strings.Replace(msg, m[0]+":", "", 1))
	}
	return d
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// decodePolicy walks one document into a Policy, recording the line of every
// field. fold makes key matching case-insensitive (karmor's JSON).
// budget counts the nodes walked so far in the file, across its documents.
func decodePolicy(file string, root *yaml.Node, fold bool, budget *walkBudget) (*Policy, Diagnostics) {
	p := &Policy{Origin: Origin{File: file, Line: root.Line, lines: map[string]int{}}}
	d := &walker{sink: diagSink{origin: &p.Origin}, fold: fold, budget: budget}
	if root.Kind != yaml.MappingNode {
		d.sink.errorf("", "a policy must be a mapping, found %s", nodeKind(root))
		return nil, d.sink.out
	}
	d.value(root, reflect.ValueOf(p).Elem(), "")
	if d.budget.exceeded() {
		return nil, d.sink.out
	}
	return p, d.sink.out
}

type walker struct {
	sink   diagSink
	fold   bool
	budget *walkBudget
	// aliasLine is the line of the outermost alias being expanded (0 when
	// none), the place to point at when expansion goes past maxNodes.
	aliasLine int
}

// overBudget reports whether the walk has gone past its budget, and says so
// once, at the alias whose expansion crossed it when there is one.
func (w *walker) overBudget(n *yaml.Node, path string) bool {
	b := w.budget
	if !b.exceeded() {
		return false
	}
	if b.reported {
		return true
	}
	b.reported = true
	what := fmt.Sprintf("%d YAML nodes", nodeCap)
	if b.bytes > byteCap {
		what = fmt.Sprintf("%d bytes of text", byteCap)
	}
	d := Diagnostic{File: w.sink.origin.File, Line: n.Line, Path: path,
		Msg: fmt.Sprintf("more than %s in this input; refused", what)}
	if w.aliasLine != 0 {
		d.Line = w.aliasLine
		d.Msg = fmt.Sprintf("aliases expand to more than %s (an alias bomb?); refused", what)
	}
	w.sink.out = append(w.sink.out, d)
	return true
}

// ignoredKeys are Kubernetes bookkeeping fields: accepted and dropped, since
// `kubectl get -o yaml` output is a common source of policy files.
var ignoredKeys = map[string]bool{
	"status": true, "creationTimestamp": true, "resourceVersion": true, "uid": true,
	"generation": true, "managedFields": true, "selfLink": true, "finalizers": true,
	"ownerReferences": true, "generateName": true, "deletionTimestamp": true,
	"deletionGracePeriodSeconds": true,
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func (w *walker) value(n *yaml.Node, v reflect.Value, path string) {
	w.budget.nodes++
	if w.overBudget(n, path) {
		return
	}
	if n.Kind == yaml.AliasNode {
		if w.aliasLine == 0 {
			w.aliasLine = n.Line
			defer func() { w.aliasLine = 0 }()
		}
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode {
		w.budget.bytes += len(n.Value)
		if w.overBudget(n, path) {
			return
		}
	}
	if path != "" {
		w.sink.origin.lines[path] = n.Line
	}
	if isNull(n) {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		w.value(n, v.Elem(), path)
	case reflect.Struct:
		w.structValue(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.sink.errorf(path, "expected a list, found %s", nodeKind(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if w.budget.exceeded() {
				break
			}
			w.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.sink.errorf(path, "expected a mapping of strings, found %s", nodeKind(n))
			return
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if val.Kind == yaml.AliasNode {
				val = val.Alias
			}
			w.budget.nodes++
			w.budget.bytes += len(k.Value) + len(val.Value)
			if w.overBudget(val, join(path, k.Value)) {
				return
			}
			if val.Kind != yaml.ScalarNode {
				w.sink.errorf(join(path, k.Value), "expected a string, found %s", nodeKind(val))
				continue
			}
			w.sink.origin.lines[join(path, k.Value)] = k.Line
			m.SetMapIndex(reflect.ValueOf(k.Value), reflect.ValueOf(val.Value))
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.sink.errorf(path, "expected a string, found %s", nodeKind(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
			w.sink.errorf(path, "expected an integer, found %s", nodeKind(n))
			return
		}
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil || f != float64(int32(f)) {
			w.sink.errorf(path, "expected an integer, found %q", n.Value)
			return
		}
		v.SetInt(int64(f))
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			w.sink.errorf(path, "expected true or false, found %s", nodeKind(n))
			return
		}
		b, _ := strconv.ParseBool(strings.ToLower(n.Value))
		v.SetBool(b)
	default:
		w.sink.errorf(path, "unsupported field type %s", v.Kind())
	}
}

func (w *walker) structValue(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		w.sink.errorf(path, "expected a mapping, found %s", nodeKind(n))
		return
	}
	fields := fieldsOf(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		name := k.Value
		fpath := join(path, name)
		idx, ok := fields[name]
		if !ok && w.fold {
			for fname, fi := range fields {
				if strings.EqualFold(fname, name) {
					idx, ok, name = fi, true, fname
					break
				}
			}
			fpath = join(path, name)
		}
		if !ok {
			if ignoredKeys[name] {
				continue
			}
			w.sink.origin.lines[fpath] = k.Line
			if hint := closestField(fields, name); hint != "" {
				w.sink.errorf(fpath, "unknown field (did you mean %q?)", hint)
			} else {
				w.sink.errorf(fpath, "unknown field")
			}
			continue
		}
		if seen[name] {
			w.sink.origin.lines[fpath] = k.Line
			w.sink.errorf(fpath, "field given twice")
			continue
		}
		seen[name] = true
		w.sink.origin.lines[fpath] = k.Line
		w.value(val, v.FieldByIndex(idx), fpath)
	}
}

// fieldCache holds fieldsOf per struct type: reflecting over a type for
// every mapping node was a third of the cost of decoding a large file.
var fieldCache sync.Map // reflect.Type -> map[string][]int, never modified once stored

// fieldsOf maps yaml field names to struct field indexes, flattening inline
// structs. The map returned is shared: callers must not modify it.
func fieldsOf(t reflect.Type) map[string][]int {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string][]int)
	}
	m := reflectFields(t)
	fieldCache.Store(t, m)
	return m
}

func reflectFields(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "inline" {
			for k, idx := range reflectFields(f.Type) {
				out[k] = append([]int{i}, idx...)
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = []int{i}
	}
	return out
}

func closestField(fields map[string][]int, name string) string {
	for f := range fields {
		if strings.EqualFold(f, name) {
			return f
		}
	}
	return ""
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return fmt.Sprintf("string %q", n.Value)
		case "!!null":
			return "null"
		default:
			return fmt.Sprintf("%q", n.Value)
		}
	}
	return "unexpected node"
}
