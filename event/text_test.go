package event

import (
	"testing"
	"unicode/utf8"
)

func TestValidText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"/etc/hosts", "/etc/hosts"},
		{"caf\u00e9", "caf\u00e9"},
		{"\xff", `\xff`},
		{"/tmp/a\xffb", `/tmp/a\xffb`},
		{"\xe2\x82", `\xe2\x82`},                // truncated sequence: each byte escaped
		{"\xed\xa0\x80", `\xed\xa0\x80`},        // a surrogate is not valid UTF-8
		{"ok \u20ac \xc0\xaf", `ok € \xc0\xaf`}, // overlong encoding
		{"\ufffd", "\ufffd"},                    // a real U+FFFD stays
	} {
		got := ValidText(tc.in)
		if got != tc.want {
			t.Errorf("ValidText(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("ValidText(%q) = %q is not valid UTF-8", tc.in, got)
		}
	}
}

func FuzzValidText(f *testing.F) {
	f.Add("/tmp/\xff")
	f.Fuzz(func(t *testing.T, s string) {
		got := ValidText(s)
		if !utf8.ValidString(got) {
			t.Fatalf("ValidText(%q) = %q: not valid UTF-8", s, got)
		}
		if utf8.ValidString(s) && got != s {
			t.Fatalf("valid input changed: %q -> %q", s, got)
		}
	})
}
