package config

import (
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/armorhost/kubearmor/hostpolicy"
)

// labelMap takes hostLabels given as a YAML mapping, checked per label with
// its line, into the key=value form flags use.
func (c *Config) labelMap(path, at string, n *yaml.Node) error {
	var parts, errs []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		at := fmt.Sprintf("%s:%d: hostLabels", path, k.Line)
		if v.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Sprintf("%s.%s: expected a single value, found a %s", at, k.Value, kindName(v)))
			continue
		}
		if err := hostpolicy.CheckLabel(k.Value, v.Value); err != nil {
			errs = append(errs, fmt.Sprintf("%s.%s: %v", at, k.Value, err))
			continue
		}
		if strings.ContainsAny(k.Value+v.Value, ",=") {
			errs = append(errs, fmt.Sprintf("%s.%s: ',' and '=' cannot appear in a label", at, k.Value))
			continue
		}
		parts = append(parts, k.Value+"="+v.Value)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	sort.Strings(parts)
	if _, err := hostpolicy.ParseLabels(strings.Join(parts, ",")); err != nil {
		return fmt.Errorf("%s: %v", at, err)
	}
	c.HostLabels = strings.Join(parts, ",")
	return nil
}

// Labels parses hostLabels: the labels this host carries besides those the
// agent sets itself (hostpolicy.HostLabels).
func (c *Config) Labels() (map[string]string, error) {
	return hostpolicy.ParseLabels(c.HostLabels)
}

// EtcdConfig is the etcd policy source and status publisher's configuration.
type EtcdConfig struct {
	Endpoints    []string
	PolicyPrefix string
	HostPrefix   string
	CA           string
	Cert, Key    string
	User         string
	PasswordFile string
	Cache        string
}

// Etcd parses the etcd keys; nil when etcdEndpoints is empty (off).
func (c *Config) Etcd() (*EtcdConfig, error) {
	var eps []string
	for _, e := range strings.Split(c.EtcdEndpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	if len(eps) == 0 {
		return nil, nil
	}
	e := &EtcdConfig{Endpoints: eps, PolicyPrefix: c.EtcdPolicyPrefix, HostPrefix: c.EtcdHostPrefix,
		CA: c.EtcdCA, Cert: c.EtcdCert, Key: c.EtcdKey, User: c.EtcdUser, PasswordFile: c.EtcdPasswordFile, Cache: c.EtcdCache}
	for _, ep := range eps {
		if !strings.HasPrefix(ep, "http://") && !strings.HasPrefix(ep, "https://") {
			return nil, fmt.Errorf("etcdEndpoints: %q must be an http:// or https:// URL", ep)
		}
	}
	// Keys of policy documents become names in the store beside the
	// directory's files; a prefix that starts with "/" keeps the two
	// apart (a file name never holds "/").
	if !strings.HasPrefix(e.PolicyPrefix, "/") || !strings.HasSuffix(e.PolicyPrefix, "/") {
		return nil, fmt.Errorf("etcdPolicyPrefix: %q must start and end with /", e.PolicyPrefix)
	}
	if e.HostPrefix != "" && (!strings.HasPrefix(e.HostPrefix, "/") || !strings.HasSuffix(e.HostPrefix, "/")) {
		return nil, fmt.Errorf("etcdHostPrefix: %q must start and end with / (or be empty)", e.HostPrefix)
	}
	if strings.HasPrefix(e.HostPrefix, e.PolicyPrefix) || (e.HostPrefix != "" && strings.HasPrefix(e.PolicyPrefix, e.HostPrefix)) {
		return nil, fmt.Errorf("etcdHostPrefix %q and etcdPolicyPrefix %q must not contain each other", e.HostPrefix, e.PolicyPrefix)
	}
	if (e.Cert == "") != (e.Key == "") {
		return nil, fmt.Errorf("etcdCert and etcdKey go together")
	}
	if (e.User == "") != (e.PasswordFile == "") {
		return nil, fmt.Errorf("etcdUser and etcdPasswordFile go together")
	}
	if e.Cache == "" {
		return nil, fmt.Errorf("etcdCache must not be empty: without it a host that starts while etcd is unreachable enforces nothing from etcd")
	}
	return e, nil
}
