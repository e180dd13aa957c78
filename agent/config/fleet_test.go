package config

import (
	"flag"
	"strings"
	"testing"
)

func TestHostLabelsKey(t *testing.T) {
	for _, tc := range []struct {
		name, text, want, err string
	}{
		{"mapping", "hostLabels:\n  env: prod\n  example.com/rack: r12\n", "env=prod,example.com/rack=r12", ""},
		{"string", "hostLabels: env=prod,team=web\n", "env=prod,team=web", ""},
		{"bad value in mapping", "hostLabels:\n  env: prod\n  team: has space\n", "", ":3: hostLabels.team: label team: value"},
		{"nested", "hostLabels:\n  env:\n    a: b\n", "", ":2: hostLabels.env: expected a single value, found a mapping"},
		{"host name label", "hostLabels:\n  kubearmor.io/hostname: x\n", "", "hostLabels.kubearmor.io/hostname: label kubearmor.io/hostname is the host name's"},
		{"bad string", "hostLabels: env\n", "", `hostLabels: label "env" is not key=value`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(writeConfig(t, tc.text), true)
			if err == nil {
				err = c.Validate()
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l, _ := c.Labels()
			if len(l) != strings.Count(tc.want, "=") || c.HostLabels != tc.want {
				t.Fatalf("hostLabels = %q (%v), want %q", c.HostLabels, l, tc.want)
			}
		})
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	o := RegisterFlags(fs)
	if err := fs.Parse([]string{"--hostLabels=env=dev"}); err != nil {
		t.Fatal(err)
	}
	c, _ := Load(writeConfig(t, "hostLabels:\n  env: prod\n"), true)
	if err := o.Apply(c); err != nil || c.HostLabels != "env=dev" {
		t.Fatalf("the flag overrides the file: %q %v", c.HostLabels, err)
	}
}

func TestEtcdKeys(t *testing.T) {
	c := Defaults()
	if e, err := c.Etcd(); e != nil || err != nil {
		t.Fatalf("etcd is off by default: %v %v", e, err)
	}
	for _, tc := range []struct {
		set func(*Config)
		err string
	}{
		{func(c *Config) {}, ""},
		{func(c *Config) { c.EtcdEndpoints = "10.0.0.1:2379" }, "must be an http:// or https:// URL"},
		{func(c *Config) { c.EtcdPolicyPrefix = "kubearmor/" }, "etcdPolicyPrefix"},
		{func(c *Config) { c.EtcdHostPrefix = "/kubearmor/policies/hosts/" }, "must not contain each other"},
		{func(c *Config) { c.EtcdHostPrefix = "" }, ""},
		{func(c *Config) { c.EtcdCert = "/c.pem" }, "etcdCert and etcdKey go together"},
		{func(c *Config) { c.EtcdUser = "agent" }, "etcdUser and etcdPasswordFile go together"},
		{func(c *Config) { c.EtcdCache = "" }, "etcdCache must not be empty"},
	} {
		c := Defaults()
		c.EtcdEndpoints = "https://127.0.0.1:2379, https://127.0.0.2:2379"
		tc.set(c)
		e, err := c.Etcd()
		if tc.err == "" {
			if err != nil || len(e.Endpoints) != 2 {
				t.Errorf("%s: %v %+v", tc.err, err, e)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("err %v, want %q", err, tc.err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Validate: %v, want %q", err, tc.err)
		}
	}
}
