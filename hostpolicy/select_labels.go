package hostpolicy

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
)

// OSReleasePath is where HostLabels reads the distribution's identity.
const OSReleasePath = "/etc/os-release"

// HostLabels returns the labels of a host: the ones the agent sets itself
// (kubernetes.io/os and kubernetes.io/arch, as the Go runtime names them, as
// Kubernetes does; kubearmor.io/os-id and kubearmor.io/os-version-id from
// osRelease when it has them), then extra (the configuration's hostLabels),
// which may override them. The host name is not among them: it is
// Options.Host, and no label may override it (ParseLabels refuses it).
func HostLabels(osRelease []byte, extra map[string]string) map[string]string {
	l := map[string]string{LabelOS: runtime.GOOS, LabelArch: runtime.GOARCH}
	rel := parseOSRelease(osRelease)
	if v := rel["ID"]; v != "" {
		l[LabelDistro] = v
	}
	if v := rel["VERSION_ID"]; v != "" {
		l[LabelDistroVersion] = v
	}
	for k, v := range extra {
		l[k] = v
	}
	return l
}

// parseOSRelease reads KEY=value lines (os-release(5)): values may be quoted
// with shell quoting; comments and blank lines are skipped.
func parseOSRelease(data []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		} else if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
			v = v[1 : len(v)-1]
		}
		out[k] = v
	}
	return out
}

// ReadHostLabels is HostLabels with /etc/os-release read from the host; a
// missing file only means no distribution labels.
func ReadHostLabels(extra map[string]string) map[string]string {
	data, _ := os.ReadFile(OSReleasePath)
	return HostLabels(data, extra)
}

// ParseLabels reads labels given as "key=value,key=value" (a flag, the
// configuration's hostLabels). Keys and values follow the syntax of
// Kubernetes labels; the host name labels are refused, since the host name
// is the host key's to set.
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("label %q is not key=value", item)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if err := CheckLabel(k, v); err != nil {
			return nil, err
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("label %s given twice", k)
		}
		out[k] = v
	}
	return out, nil
}

// CheckLabel checks one host label against the syntax of Kubernetes labels
// (an optional DNS-subdomain prefix and "/", a name of at most 63
// characters; a value of at most 63 characters of [A-Za-z0-9._-], starting
// and ending alphanumeric, or empty) and refuses the host name labels.
func CheckLabel(k, v string) error {
	if k == LabelHostname || k == LabelHostnameRegex {
		return fmt.Errorf("label %s is the host name's: set the host key instead", k)
	}
	name := k
	if prefix, n, ok := strings.Cut(k, "/"); ok {
		if prefix == "" || len(prefix) > 253 || strings.Trim(prefix, "abcdefghijklmnopqrstuvwxyz0123456789.-") != "" {
			return fmt.Errorf("label key %q: the prefix before / must be a DNS name (lowercase letters, digits, '.', '-')", k)
		}
		name = n
	}
	if !labelName(name, false) {
		return fmt.Errorf("label key %q: the name must be 1-63 characters of letters, digits, '-', '_', '.', starting and ending with a letter or digit", k)
	}
	if !labelName(v, true) {
		return fmt.Errorf("label %s: value %q must be at most 63 characters of letters, digits, '-', '_', '.', starting and ending with a letter or digit", k, v)
	}
	return nil
}

func labelName(s string, emptyOK bool) bool {
	if s == "" {
		return emptyOK
	}
	if len(s) > 63 {
		return false
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !alnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return alnum(s[0]) && alnum(s[len(s)-1])
}

// FormatLabels renders labels as sorted key=value pairs, for the log,
// status and the host's key.
func FormatLabels(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}
