package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubearmor.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMissingFileGivesDefaults(t *testing.T) {
	c, err := Load(filepath.Join(t.TempDir(), "absent.yaml"), false)
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPC != "32767" || c.PolicyDir != "/etc/kubearmor/policies" || !c.AlertThrottling || c.MaxAlertPerSec != 10 {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if !strings.Contains(c.Source, "built-in defaults") {
		t.Fatalf("source = %q", c.Source)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults must validate: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "absent.yaml"), true); err == nil {
		t.Fatal("a missing --config file must be an error")
	}
}

func TestUpstreamConfigLoads(t *testing.T) {
	// upstream's packaging/kubearmor.yaml, key for key
	p := writeConfig(t, `cluster: "default"
gRPC: "32767"
hostVisibility: "process,file,network,capabilities"
enableKubeArmorHostPolicy: true
enableKubeArmorVm: false
k8s: false
alertThrottling: true
maxAlertPerSec: 10
throttleSec: 30
`)
	c, err := Load(p, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 3 {
		t.Fatalf("want 3 warnings for upstream-only keys, got %q", c.Warnings)
	}
	if !strings.Contains(c.Warnings[0], ":4: enableKubeArmorHostPolicy") {
		t.Fatalf("warning must name file:line and key: %q", c.Warnings[0])
	}
	v, _ := c.Visibility()
	if !v.Process || !v.File || !v.Network || !v.Capabilities {
		t.Fatalf("visibility = %+v", v)
	}
}

func TestBadConfig(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"unknown key", "cluster: a\nbogus: 1\n", ":2: bogus: unknown key"},
		{"wrong case", "grpc: 1\n", `:1: grpc: unknown key (did you mean "gRPC"?)`},
		{"bool type", "alertThrottling: yes\n", `:1: alertThrottling: expected true or false, found "yes"`},
		{"int type", "maxAlertPerSec: ten\n", `:1: maxAlertPerSec: expected an integer, found "ten"`},
		{"list value", "cluster: [a, b]\n", ":1: cluster: expected a single value, found a list"},
		{"duplicate", "cluster: a\ncluster: b\n", ":2: cluster: given twice"},
		{"syntax", "cluster: [\n", "kubearmor.yaml: "},
		{"not a mapping", "- a\n", ":1: the configuration must be a mapping"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tc.text), true)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"posture", func(c *Config) { c.HostDefaultFilePosture = "deny" }, "hostDefaultFilePosture: must be audit or block"},
		{"visibility", func(c *Config) { c.HostVisibility = "process,disk" }, `unknown scope "disk"`},
		{"visibility none", func(c *Config) { c.HostVisibility = "none" }, ""},
		{"lsm", func(c *Config) { c.LSM = "bpf,tomoyo" }, `unknown enforcer "tomoyo"`},
		{"lsm selinux from upstream", func(c *Config) { c.LSM = "bpf,apparmor,selinux" }, ""},
		{"public grpc without tls", func(c *Config) { c.GRPC = "0.0.0.0:32767" }, "requires tlsEnabled"},
		{"public grpc with tls", func(c *Config) { c.GRPC = "0.0.0.0:32767"; c.TLSEnabled = true }, ""},
		{"localhost grpc", func(c *Config) { c.GRPC = "localhost:1234" }, ""},
		{"bad port", func(c *Config) { c.GRPC = "70000" }, "bad port"},
		{"metrics public", func(c *Config) { c.Metrics = "0.0.0.0:9090" }, "loopback only"},
		{"throttle", func(c *Config) { c.MaxAlertPerSec = 0 }, "maxAlertPerSec: must be at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			tc.edit(c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestFlagsOverrideFile(t *testing.T) {
	p := writeConfig(t, "cluster: fromfile\nmaxAlertPerSec: 5\n")
	fs := flag.NewFlagSet("kubearmor", flag.ContinueOnError)
	o := RegisterFlags(fs)
	if err := fs.Parse([]string{"-cluster", "fromflag", "--debug", "--policyDir=/tmp/p"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Apply(c); err != nil {
		t.Fatal(err)
	}
	if c.Cluster != "fromflag" || c.MaxAlertPerSec != 5 || !c.Debug || c.PolicyDir != "/tmp/p" {
		t.Fatalf("got %+v", c)
	}
	if err := fs.Parse([]string{"-maxAlertPerSec", "x"}); err == nil {
		t.Fatal("a bad flag value must be an error")
	}
}

// TestHelpDefaults: --help states each default as it behaves: the runtime
// sockets are detected, not "none" (which would mean disabled).
func TestHelpDefaults(t *testing.T) {
	fs := flag.NewFlagSet("kubearmor", flag.ContinueOnError)
	RegisterFlags(fs)
	for name, want := range map[string]string{
		"dockerSocket":     "(default detect)",
		"containerdSocket": "(default detect)",
		"logPath":          "(default none)", // "none" is the value here
		"syslog":           "(default empty)",
		"lsm":              "(default bpf,apparmor,fanotify)",
	} {
		f := fs.Lookup(name)
		if f == nil {
			t.Fatalf("no flag %s", name)
		}
		if !strings.HasSuffix(f.Usage, want) {
			t.Errorf("--%s usage %q, want it to end in %q", name, f.Usage, want)
		}
	}
}
