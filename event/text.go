package event

import (
	"strings"
	"unicode/utf8"
)

// ValidText returns s unchanged when it is valid UTF-8, and otherwise with
// every byte that is not part of a valid UTF-8 sequence written as the four
// characters \xNN (lower-case hex). Paths and arguments are bytes on Linux,
// but protobuf strings, JSON and syslog need UTF-8: every output escapes
// the same way, through this one function, so that an alert reads the same
// in gRPC, the JSON file and syslog, and one file name with a stray byte
// cannot end a stream. Valid text that happens to contain `\x` is left as
// it is; the escape is for reading, not for reversing.
func ValidText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 {
			b.WriteString(`\x`)
			b.WriteByte(hex[s[i]>>4])
			b.WriteByte(hex[s[i]&0xf])
			i++
			continue
		}
		b.WriteString(s[i : i+size])
		i += size
	}
	return b.String()
}
