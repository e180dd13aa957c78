// Package jsonenc encodes alerts and logs as JSON without reflection: the
// exact bytes json.Marshal produces for *kubearmorpb.Alert and
// *kubearmorpb.Log (field order and names of the json tags, their
// omitempty, map keys sorted, strings escaped with HTML escaping), appended
// to a caller's buffer.
//
// Why not json.Marshal: with a log consumer attached every watched event is
// encoded, and encoding/json's reflection over the ~40 fields was most of
// the agent's CPU per event (issue 19; docs/benchmarks.md, "Logs written:
// the JSON encoding").
//
// Why hand-written field lists rather than a table built by reflection at
// init: straight-line code is what makes it fast, and it is kept honest by
// the tests, not by construction. TestEveryTaggedField and FuzzEncode fill
// every exported field of each struct by reflection (whatever fields the
// generated code has now) and compare with json.Marshal, so a field added
// to kubearmor.proto, renamed, retagged or reordered fails the tests until
// it is encoded here.
package jsonenc

import (
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
)

// AppendAlert appends a's JSON encoding, byte for byte json.Marshal(a).
func AppendAlert(b []byte, a *kubearmorpb.Alert) []byte {
	if a == nil {
		return append(b, "null"...)
	}
	o := object{b: append(b, '{')}
	o.int(`"Timestamp":`, a.Timestamp)
	o.str(`"UpdatedTime":`, a.UpdatedTime)
	o.str(`"ClusterName":`, a.ClusterName)
	o.str(`"HostName":`, a.HostName)
	o.str(`"NamespaceName":`, a.NamespaceName)
	o.owner(a.Owner)
	o.str(`"PodName":`, a.PodName)
	o.str(`"Labels":`, a.Labels)
	o.str(`"ContainerID":`, a.ContainerID)
	o.str(`"ContainerName":`, a.ContainerName)
	o.str(`"ContainerImage":`, a.ContainerImage)
	o.int(`"HostPPID":`, int64(a.HostPPID))
	o.int(`"HostPID":`, int64(a.HostPID))
	o.intAlways(`"PPID":`, int64(a.PPID))
	o.int(`"PID":`, int64(a.PID))
	o.intAlways(`"UID":`, int64(a.UID))
	o.str(`"ParentProcessName":`, a.ParentProcessName)
	o.str(`"ProcessName":`, a.ProcessName)
	o.str(`"PolicyName":`, a.PolicyName)
	o.str(`"Severity":`, a.Severity)
	o.str(`"Tags":`, a.Tags)
	o.strs(`"ATags":`, a.ATags)
	o.str(`"Message":`, a.Message)
	o.str(`"Type":`, a.Type)
	o.str(`"Source":`, a.Source)
	o.str(`"Operation":`, a.Operation)
	o.str(`"Resource":`, a.Resource)
	o.str(`"Data":`, a.Data)
	o.strMap(`"EventData":`, a.EventData)
	o.str(`"Enforcer":`, a.Enforcer)
	o.str(`"Action":`, a.Action)
	o.str(`"Result":`, a.Result)
	o.str(`"Cwd":`, a.Cwd)
	o.str(`"TTY":`, a.TTY)
	o.int(`"MaxAlertsPerSec":`, int64(a.MaxAlertsPerSec))
	o.int(`"DroppingAlertsInterval":`, int64(a.DroppingAlertsInterval))
	o.exec(a.ExecEvent)
	o.str(`"KubeArmorVersion":`, a.KubeArmorVersion)
	o.str(`"NodeID":`, a.NodeID)
	o.str(`"ProcessHash":`, a.ProcessHash)
	o.str(`"ParentHash":`, a.ParentHash)
	o.str(`"ResourceHash":`, a.ResourceHash)
	o.str(`"HashAlgo":`, a.HashAlgo)
	o.str(`"UserName":`, a.UserName)
	return append(o.b, '}')
}

// AppendLog appends l's JSON encoding, byte for byte json.Marshal(l).
func AppendLog(b []byte, l *kubearmorpb.Log) []byte {
	if l == nil {
		return append(b, "null"...)
	}
	o := object{b: append(b, '{')}
	o.int(`"Timestamp":`, l.Timestamp)
	o.str(`"UpdatedTime":`, l.UpdatedTime)
	o.str(`"ClusterName":`, l.ClusterName)
	o.str(`"HostName":`, l.HostName)
	o.str(`"NamespaceName":`, l.NamespaceName)
	o.owner(l.Owner)
	o.str(`"PodName":`, l.PodName)
	o.str(`"Labels":`, l.Labels)
	o.str(`"ContainerID":`, l.ContainerID)
	o.str(`"ContainerName":`, l.ContainerName)
	o.str(`"ContainerImage":`, l.ContainerImage)
	o.str(`"ParentProcessName":`, l.ParentProcessName)
	o.str(`"ProcessName":`, l.ProcessName)
	o.int(`"HostPPID":`, int64(l.HostPPID))
	o.int(`"HostPID":`, int64(l.HostPID))
	o.intAlways(`"PPID":`, int64(l.PPID))
	o.int(`"PID":`, int64(l.PID))
	o.intAlways(`"UID":`, int64(l.UID))
	o.str(`"Type":`, l.Type)
	o.str(`"Source":`, l.Source)
	o.str(`"Operation":`, l.Operation)
	o.str(`"Resource":`, l.Resource)
	o.str(`"Data":`, l.Data)
	o.strMap(`"EventData":`, l.EventData)
	o.str(`"Result":`, l.Result)
	o.str(`"Cwd":`, l.Cwd)
	o.str(`"TTY":`, l.TTY)
	o.exec(l.ExecEvent)
	o.str(`"NodeID":`, l.NodeID)
	o.str(`"ProcessHash":`, l.ProcessHash)
	o.str(`"ParentHash":`, l.ParentHash)
	o.str(`"ResourceHash":`, l.ResourceHash)
	o.str(`"HashAlgo":`, l.HashAlgo)
	o.str(`"UserName":`, l.UserName)
	return append(o.b, '}')
}

// object is a JSON object being written: b already holds its '{'; more
// says whether a member was written, so the next one needs a comma. The
// field names are passed quoted with their colon: none needs escaping.
type object struct {
	b    []byte
	more bool
}

func (o *object) key(k string) {
	if o.more {
		o.b = append(o.b, ',')
	}
	o.more = true
	o.b = append(o.b, k...)
}

// str writes an omitempty string field.
func (o *object) str(k, v string) {
	if v != "" {
		o.key(k)
		o.b = appendString(o.b, v)
	}
}

// int writes an omitempty integer field.
func (o *object) int(k string, v int64) {
	if v != 0 {
		o.intAlways(k, v)
	}
}

// intAlways writes an integer field without omitempty (PPID, UID).
func (o *object) intAlways(k string, v int64) {
	o.key(k)
	o.b = strconv.AppendInt(o.b, v, 10)
}

// strs writes an omitempty []string field: omitted when empty (nil or
// not), as encoding/json does.
func (o *object) strs(k string, v []string) {
	if len(v) == 0 {
		return
	}
	o.key(k)
	o.b = append(o.b, '[')
	for i, s := range v {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.b = appendString(o.b, s)
	}
	o.b = append(o.b, ']')
}

// strMap writes an omitempty map[string]string field with its keys in
// encoding/json's order: sorted as strings, byte by byte. The keys of a
// small map are sorted in an array on the stack, so that the usual
// EventData costs no allocation.
func (o *object) strMap(k string, m map[string]string) {
	if len(m) == 0 {
		return
	}
	o.key(k)
	var small [16]string
	keys := small[:0]
	for key := range m {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	o.b = append(o.b, '{')
	for i, key := range keys {
		if i > 0 {
			o.b = append(o.b, ',')
		}
		o.b = appendString(o.b, key)
		o.b = append(o.b, ':')
		o.b = appendString(o.b, m[key])
	}
	o.b = append(o.b, '}')
}

// owner writes the omitempty Owner field: omitted when nil, {} when set
// but empty (omitempty never omits a struct).
func (o *object) owner(p *kubearmorpb.Podowner) {
	if p == nil {
		return
	}
	o.key(`"Owner":`)
	in := object{b: append(o.b, '{')}
	in.str(`"Ref":`, p.Ref)
	in.str(`"Name":`, p.Name)
	in.str(`"Namespace":`, p.Namespace)
	o.b = append(in.b, '}')
}

// exec writes the omitempty ExecEvent field, like owner.
func (o *object) exec(e *kubearmorpb.ExecEvent) {
	if e == nil {
		return
	}
	o.key(`"ExecEvent":`)
	in := object{b: append(o.b, '{')}
	in.str(`"ExecID":`, e.ExecID)
	in.str(`"ExecutableName":`, e.ExecutableName)
	o.b = append(in.b, '}')
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string exactly as encoding/json writes
// it with HTML escaping on (json.Marshal's default): \" \\ \b \f \n \r \t,
// other control characters and < > & as \u00XX, U+2028 and U+2029 as
// \u2028 and \u2029, each byte of invalid UTF-8 as \ufffd; everything else,
// DEL included, as is.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// safe holds the ASCII bytes written as they are: not control characters,
// not '"' or '\\', not the HTML-sensitive '<', '>' and '&'.
var safe = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	t['"'], t['\\'], t['<'], t['>'], t['&'] = false, false, false, false, false
	return t
}()
