package jsonenc

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"testing"

	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
)

// oracle fails t unless AppendAlert/AppendLog write exactly json.Marshal's
// bytes for v, and append them after what the buffer already holds.
func oracle(t *testing.T, v any) {
	t.Helper()
	want, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	prefix := []byte("prefix")
	var got []byte
	switch v := v.(type) {
	case *kubearmorpb.Alert:
		got = AppendAlert(append([]byte(nil), prefix...), v)
	case *kubearmorpb.Log:
		got = AppendLog(append([]byte(nil), prefix...), v)
	default:
		t.Fatalf("oracle: %T", v)
	}
	if !bytes.HasPrefix(got, prefix) {
		t.Fatalf("the buffer's contents were overwritten: %q", got)
	}
	if got = got[len(prefix):]; !bytes.Equal(got, want) {
		t.Fatalf("encoding differs from json.Marshal\n got: %s\nwant: %s", got, want)
	}
}

// filler sets the exported fields of a message by reflection, whatever
// fields the generated code has, from a fuzzer's bytes: so that a field
// the encoder does not know is set, and the comparison with json.Marshal
// fails. The unexported protobuf internals (state, sizeCache,
// unknownFields) are left alone, as json.Marshal ignores them.
type filler struct {
	t   testing.TB
	src []byte
}

func (f *filler) byte() byte {
	if len(f.src) == 0 {
		return 0
	}
	c := f.src[0]
	f.src = f.src[1:]
	return c
}

// interesting strings: every escaping rule, and ordinary values.
var interesting = []string{
	"", "a", "Block", "/usr/bin/cat", `"quoted" \back\slash`, "<script>&amp;</script>",
	"\b\f\n\r\t\x00\x01\x1f\x7f", "line\u2028para\u2029end", "\xff\xfe bad \xc3", "\xe2\x80", // truncated U+2028
	"é日本語🙂", "\ufffd", "key", "KEY", "Key", "k\x00", "",
}

func (f *filler) string() string {
	c := f.byte()
	if c < 0x80 {
		return interesting[int(c)%len(interesting)]
	}
	n := int(c & 0x3f)
	n = min(n, len(f.src))
	s := string(f.src[:n])
	f.src = f.src[n:]
	return s
}

func (f *filler) int() int64 {
	switch c := f.byte(); c % 8 {
	case 0:
		return 0
	case 1:
		return math.MaxInt64
	case 2:
		return math.MinInt64
	case 3:
		return -1
	case 4:
		return int64(c)
	default:
		var b [8]byte
		n := copy(b[:], f.src)
		f.src = f.src[n:]
		return int64(binary.LittleEndian.Uint64(b[:]))
	}
}

func (f *filler) fill(v reflect.Value) {
	typ := v.Type()
	for i := range typ.NumField() {
		sf := typ.Field(i)
		if !sf.IsExported() {
			continue
		}
		f.value(v.Field(i), typ.Name()+"."+sf.Name)
	}
}

func (f *filler) value(fv reflect.Value, name string) {
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(f.string())
	case reflect.Int32, reflect.Int64:
		n := f.int()
		if fv.OverflowInt(n) {
			n = int64(int32(n)) // keep the extremes of int32 too
		}
		fv.SetInt(n)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			f.t.Fatalf("%s: %s: teach the test and the encoder this type", name, fv.Type())
		}
		c := f.byte()
		if c%4 == 0 {
			return // nil
		}
		s := reflect.MakeSlice(fv.Type(), int(c%4)-1, int(c%4)-1) // empty but not nil, too
		for j := range s.Len() {
			s.Index(j).SetString(f.string())
		}
		fv.Set(s)
	case reflect.Map:
		if fv.Type().Key().Kind() != reflect.String || fv.Type().Elem().Kind() != reflect.String {
			f.t.Fatalf("%s: %s: teach the test and the encoder this type", name, fv.Type())
		}
		c := f.byte()
		if c%8 == 0 {
			return // nil
		}
		m := reflect.MakeMap(fv.Type()) // empty but not nil when c%8 == 1
		for range int(c%8) - 1 {
			m.SetMapIndex(reflect.ValueOf(f.string()), reflect.ValueOf(f.string()))
		}
		fv.Set(m)
	case reflect.Pointer:
		if fv.Type().Elem().Kind() != reflect.Struct {
			f.t.Fatalf("%s: %s: teach the test and the encoder this type", name, fv.Type())
		}
		if f.byte()%3 == 0 {
			return // nil
		}
		p := reflect.New(fv.Type().Elem())
		f.fill(p.Elem())
		fv.Set(p)
	default:
		f.t.Fatalf("%s: %s: teach the test and the encoder this type", name, fv.Type())
	}
}

// TestEveryTaggedField sets one exported field at a time, to a value that
// must be written, then all of them: a field of Alert, Log, Podowner or
// ExecEvent that the encoder leaves out, misnames or misplaces fails here.
func TestEveryTaggedField(t *testing.T) {
	for _, msg := range []any{&kubearmorpb.Alert{}, &kubearmorpb.Log{}} {
		typ := reflect.TypeOf(msg).Elem()
		for i := range typ.NumField() {
			sf := typ.Field(i)
			if !sf.IsExported() {
				continue
			}
			if _, ok := sf.Tag.Lookup("json"); !ok {
				t.Errorf("%s.%s has no json tag: json.Marshal would use the Go name; check the encoder", typ.Name(), sf.Name)
			}
			t.Run(typ.Name()+"."+sf.Name, func(t *testing.T) {
				v := reflect.New(typ)
				setNonZero(t, v.Elem().Field(i))
				oracle(t, v.Interface())
			})
		}
		all := reflect.New(typ)
		for i := range typ.NumField() {
			if typ.Field(i).IsExported() {
				setNonZero(t, all.Elem().Field(i))
			}
		}
		oracle(t, all.Interface())
	}
}

// setNonZero sets fv to a value that no omitempty omits; a struct pointer
// to a struct with each of its fields set.
func setNonZero(t *testing.T, fv reflect.Value) {
	switch fv.Kind() {
	case reflect.String:
		fv.SetString("v<&>\u2028")
	case reflect.Int32, reflect.Int64:
		fv.SetInt(-7)
	case reflect.Slice:
		fv.Set(reflect.ValueOf([]string{"b", "a"}))
	case reflect.Map:
		fv.Set(reflect.ValueOf(map[string]string{"b": "1", "a": "2", "A": "3"}))
	case reflect.Pointer:
		p := reflect.New(fv.Type().Elem())
		for i := range p.Elem().NumField() {
			if p.Elem().Type().Field(i).IsExported() {
				setNonZero(t, p.Elem().Field(i))
			}
		}
		fv.Set(p)
	default:
		t.Fatalf("%s: teach the test and the encoder this type", fv.Type())
	}
}

// TestRules: each rule of encoding/json the encoder copies, with the bytes
// written out, and checked against json.Marshal too.
func TestRules(t *testing.T) {
	for _, tc := range []struct {
		name string
		log  *kubearmorpb.Log
		want string
	}{
		{"empty: PPID and UID have no omitempty", &kubearmorpb.Log{}, `{"PPID":0,"UID":0}`},
		{"zero ints omitted, negative and large written",
			&kubearmorpb.Log{Timestamp: math.MinInt64, HostPID: 0, PID: math.MaxInt32, PPID: -1, UID: math.MinInt32},
			`{"Timestamp":-9223372036854775808,"PPID":-1,"PID":2147483647,"UID":-2147483648}`},
		{"field order is the struct's, not the alphabet's",
			&kubearmorpb.Log{UserName: "u", Type: "t", ClusterName: "c"},
			`{"ClusterName":"c","PPID":0,"UID":0,"Type":"t","UserName":"u"}`},
		{"quote, backslash, \\b \\f \\n \\r \\t", &kubearmorpb.Log{Data: "\"\\\b\f\n\r\t"},
			`{"PPID":0,"UID":0,"Data":"\"\\\b\f\n\r\t"}`},
		{"other control characters as \\u00XX, DEL as is", &kubearmorpb.Log{Data: "\x00\x01\x1f\x7f"},
			`{"PPID":0,"UID":0,"Data":"\u0000\u0001\u001f` + "\x7f" + `"}`},
		{"HTML characters", &kubearmorpb.Log{Data: "<a&b>"},
			`{"PPID":0,"UID":0,"Data":"\u003ca\u0026b\u003e"}`},
		{"U+2028 and U+2029", &kubearmorpb.Log{Data: "a\u2028b\u2029c"},
			`{"PPID":0,"UID":0,"Data":"a\u2028b\u2029c"}`},
		{"invalid UTF-8: each bad byte is \\ufffd, valid runes kept", &kubearmorpb.Log{Data: "\xffé\xe2\x80\xc3"},
			`{"PPID":0,"UID":0,"Data":"\ufffdé\ufffd\ufffd\ufffd"}`},
		{"empty map omitted", &kubearmorpb.Log{EventData: map[string]string{}}, `{"PPID":0,"UID":0}`},
		{"map keys sorted bytewise and escaped",
			&kubearmorpb.Log{EventData: map[string]string{"b": "<", "a": "", "B": "x", "é": "1", "a\n": "2"}},
			`{"PPID":0,"UID":0,"EventData":{"B":"x","a":"","a\n":"2","b":"\u003c","é":"1"}}`},
		{"nil pointers omitted", &kubearmorpb.Log{Owner: nil, ExecEvent: nil}, `{"PPID":0,"UID":0}`},
		{"empty structs written", &kubearmorpb.Log{Owner: &kubearmorpb.Podowner{}, ExecEvent: &kubearmorpb.ExecEvent{}},
			`{"Owner":{},"PPID":0,"UID":0,"ExecEvent":{}}`},
		{"structs' fields", &kubearmorpb.Log{Owner: &kubearmorpb.Podowner{Namespace: "n", Ref: "r"}, ExecEvent: &kubearmorpb.ExecEvent{ExecutableName: "e"}},
			`{"Owner":{"Ref":"r","Namespace":"n"},"PPID":0,"UID":0,"ExecEvent":{"ExecutableName":"e"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(AppendLog(nil, tc.log)); got != tc.want {
				t.Errorf("AppendLog = %s, want %s", got, tc.want)
			}
			oracle(t, tc.log)
		})
	}

	alerts := []struct {
		name  string
		alert *kubearmorpb.Alert
		want  string
	}{
		{"empty", &kubearmorpb.Alert{}, `{"PPID":0,"UID":0}`},
		{"ATags: empty omitted", &kubearmorpb.Alert{ATags: []string{}}, `{"PPID":0,"UID":0}`},
		{"ATags", &kubearmorpb.Alert{ATags: []string{"b", "<a>", ""}}, `{"PPID":0,"UID":0,"ATags":["b","\u003ca\u003e",""]}`},
		{"many map keys (past the stack array)", &kubearmorpb.Alert{EventData: manyKeys(40)}, ""},
	}
	for _, tc := range alerts {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(AppendAlert(nil, tc.alert)); tc.want != "" && got != tc.want {
				t.Errorf("AppendAlert = %s, want %s", got, tc.want)
			}
			oracle(t, tc.alert)
		})
	}

	if got := string(AppendAlert(nil, nil)) + string(AppendLog(nil, nil)); got != "nullnull" {
		t.Errorf("nil messages: %s, want nullnull as json.Marshal", got)
	}
}

func manyKeys(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[string(rune('z'-i%26))+string(rune('0'+i/26))] = string(rune('a' + i%26))
	}
	return m
}

// TestTypical: the alert and the log the benchmarks encode.
func TestTypical(t *testing.T) {
	oracle(t, typicalAlert())
	oracle(t, typicalLog())
}

// FuzzEncode fills an Alert and a Log by reflection from the fuzzer's bytes
// (strings with invalid UTF-8, control and HTML characters, U+2028, large
// and negative integers, nil and set Owner and ExecEvent, nil, empty and
// several-key maps) and compares with json.Marshal.
func FuzzEncode(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Add(bytes.Repeat([]byte{0x85, 0xff, '<', 0xe2, 0x80, 0xa8, '"', 0x07}, 40))
	f.Add(bytes.Repeat([]byte{7, 15, 1, 2, 3, 4, 5, 6}, 60))
	f.Fuzz(func(t *testing.T, data []byte) {
		fl := &filler{t: t, src: data}
		var a kubearmorpb.Alert
		fl.fill(reflect.ValueOf(&a).Elem())
		oracle(t, &a)
		fl.src = data
		var l kubearmorpb.Log
		fl.fill(reflect.ValueOf(&l).Elem())
		oracle(t, &l)
	})
}

func typicalLog() *kubearmorpb.Log {
	return &kubearmorpb.Log{
		Timestamp: 1764950000, UpdatedTime: "2026-12-05T17:39:22.123456789Z",
		ClusterName: "default", HostName: "node-1", HostPPID: 1234, HostPID: 5678, PPID: 1234, PID: 5678, UID: 1000,
		ParentProcessName: "/usr/bin/bash", ProcessName: "/usr/bin/cat",
		Type: "HostLog", Source: "/usr/bin/cat /etc/hosts", Operation: "File", Resource: "/etc/hosts",
		Data: "lsm=SECURITY_FILE_OPEN flags=O_RDONLY", Result: "Passed", Cwd: "/home/user/", TTY: "pts0",
		NodeID: "0f3c9a2b7d1e4f6a8b5c2d9e1f0a3b4c", UserName: "user",
	}
}

func typicalAlert() *kubearmorpb.Alert {
	return &kubearmorpb.Alert{
		Timestamp: 1764950000, UpdatedTime: "2026-12-05T17:39:22.123456789Z",
		ClusterName: "default", HostName: "node-1", HostPPID: 1234, HostPID: 5678, PPID: 1234, PID: 5678, UID: 1000,
		ParentProcessName: "/usr/bin/bash", ProcessName: "/usr/bin/cat",
		PolicyName: "block-etc-shadow", Severity: "5", Tags: "NIST,CIS", ATags: []string{"NIST", "CIS"},
		Message: "reading /etc/shadow", Type: "MatchedHostPolicy", Source: "/usr/bin/cat /etc/shadow",
		Operation: "File", Resource: "/etc/shadow", Data: "lsm=SECURITY_FILE_OPEN flags=O_RDONLY",
		EventData: map[string]string{"Flags": "O_RDONLY", "Path": "/etc/shadow"},
		Enforcer:  "BPFLSM", Action: "Block", Result: "Permission denied", Cwd: "/home/user/", TTY: "pts0",
		NodeID: "0f3c9a2b7d1e4f6a8b5c2d9e1f0a3b4c", UserName: "user",
	}
}

// BenchmarkEncode: json.Marshal against the encoder, on a typical log and
// alert, appending to a reused buffer as the JSON lines exporter does.
func BenchmarkEncode(b *testing.B) {
	l, a := typicalLog(), typicalAlert()
	b.Run("Log/json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(l); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Log/AppendLog", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = AppendLog(buf[:0], l)
		}
	})
	b.Run("Alert/json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(a); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Alert/AppendAlert", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = AppendAlert(buf[:0], a)
		}
	})
}

// TestEveryPosition puts each byte value, U+2028 and a 2-byte rune at each
// position of a run of ASCII: what is copied before and after an escape.
func TestEveryPosition(t *testing.T) {
	base := "abcdefghijklmnopqrstu"
	var specials []string
	for c := range 256 {
		specials = append(specials, string([]byte{byte(c)}))
	}
	specials = append(specials, "\u2028", "é")
	for _, sp := range specials {
		for i := range len(base) + 1 {
			oracle(t, &kubearmorpb.Log{Data: base[:i] + sp + base[i:]})
		}
	}
}
