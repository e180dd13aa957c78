// Package config loads the agent's configuration: built-in defaults, then
// /etc/kubearmor/kubearmor.yaml (or --config FILE), then command-line flags.
// Keys and their meaning follow upstream KubeArmor's systemd mode so an
// existing kubearmor.yaml keeps working; a key this agent does not know, or a
// value of the wrong type, is an error naming the key and its line.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultPath is where the agent looks for its configuration.
const DefaultPath = "/etc/kubearmor/kubearmor.yaml"

// Config is the agent's configuration after defaults, file and flags.
type Config struct {
	Cluster string // ClusterName of every alert
	Host    string // HostName of every alert and the node identity for nodeSelector

	GRPC        string // port (listens on 127.0.0.1) or host:port; non-loopback needs TLS
	Socket      string // unix socket for the local CLI and karmor (--gRPC=unix://...)
	TLSEnabled  bool
	TLSCertPath string // directory with ca.crt, server.crt, server.key

	PolicyDir string // watched directory of KubeArmorHostPolicy YAML files

	// HostLabels are this host's labels for nodeSelector.matchLabels, as
	// key=value,key=value (the YAML file may give a mapping); see Labels.
	HostLabels string

	// The etcd policy source and host status (off while EtcdEndpoints is
	// empty); see Etcd.
	EtcdEndpoints    string // comma list of URLs: https://10.0.0.5:2379,...
	EtcdPolicyPrefix string
	EtcdHostPrefix   string // "" = do not publish this host's status
	EtcdCA           string // CA bundle that signed the etcd servers' certificates
	EtcdCert         string // client certificate and key for etcd's TLS client auth
	EtcdKey          string
	EtcdUser         string // etcd user (auth enabled); the password is read from EtcdPasswordFile
	EtcdPasswordFile string
	EtcdCache        string // last good documents from etcd, read at start while etcd is unreachable

	// Who may read telemetry, and the gRPC server's fair share.
	TelemetryGroup         string // root and this group read alerts/logs; "*" everyone; "" root only
	MaxConnections         int    // 0 = derived from RLIMIT_NOFILE
	MaxConnectionsPerUser  int
	MaxStreamsPerUser      int
	SubscriberStallTimeout string // Go duration

	HostVisibility                 string // comma list of process,file,network,capabilities; "none"; "default"
	HostDefaultFilePosture         string // audit|block
	HostDefaultNetworkPosture      string
	HostDefaultCapabilitiesPosture string

	// Default postures of container policies (KubeArmorPolicy) allow-lists.
	DefaultFilePosture         string
	DefaultNetworkPosture      string
	DefaultCapabilitiesPosture string

	AlertThrottling bool
	MaxAlertPerSec  int
	ThrottleSec     int

	LogPath      string // none|stdout|FILE: JSON lines of every alert and log
	Syslog       string // "" or unix:///dev/log, udp://host:514, tcp://host:514
	SyslogFormat string // rfc5424|cef
	Metrics      string // "" (off) or a loopback host:port for Prometheus metrics

	// OTLP export to an OpenTelemetry Collector (off when OTLPEndpoint is "").
	OTLPEndpoint    string // HOST:PORT (or an http(s):// URL for http/protobuf)
	OTLPProtocol    string // grpc|http/protobuf
	OTLPInsecure    bool   // plaintext instead of TLS
	OTLPCACert      string // CA file to verify the collector ("" = system roots)
	OTLPClientCert  string // client certificate and key for mTLS
	OTLPClientKey   string
	OTLPHeaders     string // key=value,... sent with every request
	OTLPEvents      string // alerts|logs|both
	OTLPBatchSize   int
	OTLPQueueLength int

	DockerSocket     string // "" = detect, "none" = do not follow
	ContainerdSocket string

	LSM       string // preference list: bpf,apparmor,fanotify; "none" = monitor only
	BPFFsPath string
	Debug     bool

	// Warnings are findings that did not stop loading: upstream keys this
	// agent accepts but ignores, and the defaults note when no file exists.
	Warnings []string `yaml:"-"`
	// Source names where the configuration came from, for the start-up log.
	Source string `yaml:"-"`
}

type kind int

const (
	kString kind = iota
	kBool
	kInt
)

// key describes one configuration key: its YAML/flag name, type, default and
// help. The one table drives defaults, file parsing, flags and --help.
type key struct {
	name string
	kind kind
	def  string
	// defText is the default as --help shows it, when def alone would
	// mislead ("" that means "detect", not "none").
	defText string
	help    string
	str     func(*Config) *string
	bool    func(*Config) *bool
	int     func(*Config) *int
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	return h
}

var keys = []key{
	{name: "cluster", def: "default", help: "cluster name reported in every alert (ClusterName)", str: func(c *Config) *string { return &c.Cluster }},
	{name: "host", def: "", help: "host name reported in alerts and matched by kubearmor.io/hostname", str: func(c *Config) *string { return &c.Host }},
	{name: "gRPC", def: "32767", help: "gRPC port on 127.0.0.1, or HOST:PORT (a non-loopback address requires tlsEnabled)", str: func(c *Config) *string { return &c.GRPC }},
	{name: "socket", def: "/run/kubearmor/kubearmor.sock", help: "unix socket for kubearmor logs/status and karmor (--gRPC=unix://PATH); empty disables it", str: func(c *Config) *string { return &c.Socket }},
	{name: "tlsEnabled", kind: kBool, def: "false", help: "serve gRPC with mutual TLS (required for non-loopback addresses)", bool: func(c *Config) *bool { return &c.TLSEnabled }},
	{name: "tlsCertPath", def: "/etc/kubearmor/tls", help: "directory holding ca.crt, server.crt and server.key", str: func(c *Config) *string { return &c.TLSCertPath }},
	{name: "telemetryGroup", def: "kubearmor", help: "besides root, members of this group may read alerts, logs and status over gRPC; * = every local user; empty = root only (PolicyService is always root's or a verified TLS client's)", str: func(c *Config) *string { return &c.TelemetryGroup }},
	{name: "maxConnections", kind: kInt, def: "0", help: "gRPC connections open at once, over every user; connections over it are closed at accept (0 = min(1024, open-file limit / 4))", int: func(c *Config) *int { return &c.MaxConnections }},
	{name: "maxConnectionsPerUser", kind: kInt, def: "32", help: "gRPC connections open at once per peer uid (root on the unix socket is not limited)", int: func(c *Config) *int { return &c.MaxConnectionsPerUser }},
	{name: "maxStreamsPerUser", kind: kInt, def: "8", help: "WatchAlerts/WatchLogs/WatchMessages streams open at once per peer uid, across topics (root on the unix socket is not limited)", int: func(c *Config) *int { return &c.MaxStreamsPerUser }},
	{name: "subscriberStallTimeout", def: "30s", help: "a gRPC subscriber whose queue stays full with nothing delivered this long is disconnected (ResourceExhausted)", str: func(c *Config) *string { return &c.SubscriberStallTimeout }},
	{name: "policyDir", def: "/etc/kubearmor/policies", help: "directory of KubeArmorHostPolicy files (*.yaml, *.yml), watched live", str: func(c *Config) *string { return &c.PolicyDir }},
	{name: "hostLabels", def: "", help: "this host's labels for nodeSelector.matchLabels: key=value,key=value (in the file also a mapping); the agent adds kubernetes.io/os, kubernetes.io/arch, kubearmor.io/os-id and kubearmor.io/os-version-id", str: func(c *Config) *string { return &c.HostLabels }},
	{name: "etcdEndpoints", def: "", help: "etcd endpoints (comma list of URLs) to read policies from and publish this host's status to; empty = off", str: func(c *Config) *string { return &c.EtcdEndpoints }},
	{name: "etcdPolicyPrefix", def: "/kubearmor/policies/", help: "etcd key prefix of policy documents, one policy document (YAML or JSON) per key", str: func(c *Config) *string { return &c.EtcdPolicyPrefix }},
	{name: "etcdHostPrefix", def: "/kubearmor/hosts/", help: "etcd key prefix under which this host keeps its status (a key under a lease, PREFIX/HOST); empty = not published", str: func(c *Config) *string { return &c.EtcdHostPrefix }},
	{name: "etcdCA", def: "", help: "CA certificate file for the etcd servers (https endpoints)", str: func(c *Config) *string { return &c.EtcdCA }},
	{name: "etcdCert", def: "", help: "client certificate file for etcd's TLS client authentication (with etcdKey)", str: func(c *Config) *string { return &c.EtcdCert }},
	{name: "etcdKey", def: "", help: "client key file for etcdCert", str: func(c *Config) *string { return &c.EtcdKey }},
	{name: "etcdUser", def: "", help: "etcd user name (etcd auth enabled); the password is read from etcdPasswordFile", str: func(c *Config) *string { return &c.EtcdUser }},
	{name: "etcdPasswordFile", def: "", help: "file holding the etcd user's password (root-owned, 0600)", str: func(c *Config) *string { return &c.EtcdPasswordFile }},
	{name: "etcdCache", def: "/var/lib/kubearmor/etcd-policies.json", help: "cache of the last good policies from etcd (0600), enforced at start while etcd is unreachable", str: func(c *Config) *string { return &c.EtcdCache }},
	{name: "hostVisibility", def: "default", help: "telemetry scopes: comma list of process,file,network,capabilities; none; or default (all four)", str: func(c *Config) *string { return &c.HostVisibility }},
	{name: "hostDefaultFilePosture", def: "audit", help: "what process/file allow-lists do with everything else: audit or block", str: func(c *Config) *string { return &c.HostDefaultFilePosture }},
	{name: "hostDefaultNetworkPosture", def: "audit", help: "what network allow-lists do with everything else: audit or block", str: func(c *Config) *string { return &c.HostDefaultNetworkPosture }},
	{name: "hostDefaultCapabilitiesPosture", def: "audit", help: "what capability allow-lists do with everything else: audit or block", str: func(c *Config) *string { return &c.HostDefaultCapabilitiesPosture }},
	{name: "defaultFilePosture", def: "audit", help: "like hostDefaultFilePosture, for container policies (KubeArmorPolicy)", str: func(c *Config) *string { return &c.DefaultFilePosture }},
	{name: "defaultNetworkPosture", def: "audit", help: "like hostDefaultNetworkPosture, for container policies", str: func(c *Config) *string { return &c.DefaultNetworkPosture }},
	{name: "defaultCapabilitiesPosture", def: "audit", help: "like hostDefaultCapabilitiesPosture, for container policies", str: func(c *Config) *string { return &c.DefaultCapabilitiesPosture }},
	{name: "alertThrottling", kind: kBool, def: "true", help: "limit alerts per policy to maxAlertPerSec, pausing for throttleSec when exceeded", bool: func(c *Config) *bool { return &c.AlertThrottling }},
	{name: "maxAlertPerSec", kind: kInt, def: "10", help: "alerts per second per policy before throttling starts", int: func(c *Config) *int { return &c.MaxAlertPerSec }},
	{name: "throttleSec", kind: kInt, def: "30", help: "seconds a throttled policy's alerts are dropped (and counted)", int: func(c *Config) *int { return &c.ThrottleSec }},
	{name: "logPath", def: "none", help: "also write every alert and log as JSON lines: none, stdout, or a file (reopened on SIGHUP)", str: func(c *Config) *string { return &c.LogPath }},
	{name: "syslog", def: "", help: "forward alerts to syslog: unix:///dev/log, udp://HOST:PORT or tcp://HOST:PORT", str: func(c *Config) *string { return &c.Syslog }},
	{name: "syslogFormat", def: "rfc5424", help: "syslog message format: rfc5424 (JSON body) or cef", str: func(c *Config) *string { return &c.SyslogFormat }},
	{name: "otlpEndpoint", def: "", help: "send alerts and logs as OTLP log records to an OpenTelemetry Collector at HOST:PORT (off when empty)", str: func(c *Config) *string { return &c.OTLPEndpoint }},
	{name: "otlpProtocol", def: "grpc", help: "OTLP protocol: grpc or http/protobuf", str: func(c *Config) *string { return &c.OTLPProtocol }},
	{name: "otlpInsecure", kind: kBool, def: "false", help: "send OTLP in plaintext (otherwise TLS)", bool: func(c *Config) *bool { return &c.OTLPInsecure }},
	{name: "otlpCACert", def: "", help: "CA certificate file to verify the collector with (the system's roots when empty)", str: func(c *Config) *string { return &c.OTLPCACert }},
	{name: "otlpClientCert", def: "", help: "client certificate file for mTLS to the collector (with otlpClientKey)", str: func(c *Config) *string { return &c.OTLPClientCert }},
	{name: "otlpClientKey", def: "", help: "client key file for mTLS to the collector", str: func(c *Config) *string { return &c.OTLPClientKey }},
	{name: "otlpHeaders", def: "", help: "headers sent with every OTLP request: key=value,key2=value2 (values URL-encoded); put tokens in the config file, not on the command line", str: func(c *Config) *string { return &c.OTLPHeaders }},
	{name: "otlpEvents", def: "alerts", help: "what is sent over OTLP: alerts, logs or both", str: func(c *Config) *string { return &c.OTLPEvents }},
	{name: "otlpBatchSize", kind: kInt, def: "512", help: "OTLP log records per export request", int: func(c *Config) *int { return &c.OTLPBatchSize }},
	{name: "otlpQueueLength", kind: kInt, def: "8192", help: "OTLP records held while the collector is slow or down; when full, logs are dropped first (counted)", int: func(c *Config) *int { return &c.OTLPQueueLength }},
	{name: "metrics", def: "", help: "serve Prometheus metrics on this loopback HOST:PORT (off when empty)", str: func(c *Config) *string { return &c.Metrics }},
	{name: "dockerSocket", def: "", defText: "detect", help: "Docker socket to attribute events to containers (detected when empty; none disables)", str: func(c *Config) *string { return &c.DockerSocket }},
	{name: "containerdSocket", def: "", defText: "detect", help: "containerd socket, every namespace (detected when empty; none disables)", str: func(c *Config) *string { return &c.ContainerdSocket }},
	{name: "lsm", def: "bpf,apparmor,fanotify", help: "enforcers in order of preference (bpf, apparmor, fanotify); none = monitor only", str: func(c *Config) *string { return &c.LSM }},
	{name: "bpfFsPath", def: "/sys/fs/bpf", help: "BPF filesystem mount point", str: func(c *Config) *string { return &c.BPFFsPath }},
	{name: "debug", kind: kBool, def: "false", help: "verbose agent log", bool: func(c *Config) *bool { return &c.Debug }},
}

// upstreamOnly are keys of upstream KubeArmor's config that have no effect
// here (Kubernetes, SELinux, container-only or superseded settings). They are
// accepted with a warning so upstream config files load unchanged.
var upstreamOnly = []string{
	"k8s", "enableKubeArmorPolicy", "enableKubeArmorHostPolicy", "enableKubeArmorVm",
	"enableKubeArmorStateAgent", "visibility", "hostDefaultDevicePosture", "gRPCHealthPort", "tlsCertProvider",
	"seLinuxProfileDir", "criSocket", "nriSocket", "nriIndex", "enableNRI", "coverageTest",
	"untrackedNs", "enforcerAlerts", "defaultPostureLogs", "initTimeout", "annotateResources",
	"procfsMount", "dropResourceFromProcessLogs", "machineIDPath", "useOCIHooks", "enableIMA",
	"enableUSBDeviceHandler", "matchArgs", "enableNetworkPolicyEnforcer", "kubeconfig",
}

// Defaults returns the built-in configuration.
func Defaults() *Config {
	c := &Config{}
	for _, k := range keys {
		if err := k.set(c, k.def); err != nil {
			panic(fmt.Sprintf("config: bad default for %s: %v", k.name, err)) // a bug in the table above
		}
	}
	c.Host = hostname()
	return c
}

func (k key) set(c *Config, v string) error {
	switch k.kind {
	case kBool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("expected true or false, found %q", v)
		}
		*k.bool(c) = b
	case kInt:
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("expected an integer, found %q", v)
		}
		*k.int(c) = n
	default:
		*k.str(c) = v
	}
	return nil
}

// Load reads path over the defaults. A missing file is not an error unless
// required (the user named it with --config); the defaults then apply.
func Load(path string, required bool) (*Config, error) {
	c := Defaults()
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !required:
		c.Source = "built-in defaults (" + path + " not found)"
		return c, nil
	case err != nil:
		return nil, fmt.Errorf("config: %w", err)
	}
	c.Source = path
	if err := c.parse(path, data); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) parse(path string, data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return nil // an empty file means all defaults
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: the configuration must be a mapping of key: value", path, root.Line)
	}
	var errs []string
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		kn, vn := root.Content[i], root.Content[i+1]
		name := kn.Value
		at := fmt.Sprintf("%s:%d: %s", path, kn.Line, name)
		if seen[name] {
			errs = append(errs, at+": given twice")
			continue
		}
		seen[name] = true
		k, ok := lookup(name)
		if !ok {
			if slices.Contains(upstreamOnly, name) {
				c.Warnings = append(c.Warnings, at+": upstream KubeArmor setting with no effect here; ignored")
				continue
			}
			errs = append(errs, at+": unknown key"+suggest(name))
			continue
		}
		if vn.Kind == yaml.MappingNode && name == "hostLabels" {
			if err := c.labelMap(path, at, vn); err != nil {
				errs = append(errs, err.Error())
			}
			continue
		}
		if vn.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Sprintf("%s: expected a single value, found a %s", at, kindName(vn)))
			continue
		}
		if err := checkTag(k, vn); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", at, err))
			continue
		}
		if err := k.set(c, vn.Value); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", at, err))
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

// checkTag enforces YAML types: upstream writes gRPC: "32767" as a string, so
// strings accept numbers, but booleans and integers must be what they say.
func checkTag(k key, n *yaml.Node) error {
	switch k.kind {
	case kBool:
		if n.Tag != "!!bool" {
			return fmt.Errorf("expected true or false, found %q", n.Value)
		}
	case kInt:
		if n.Tag != "!!int" {
			return fmt.Errorf("expected an integer, found %q", n.Value)
		}
	default:
		if n.Tag == "!!null" {
			n.Value = ""
		}
	}
	return nil
}

func kindName(n *yaml.Node) string {
	if n.Kind == yaml.SequenceNode {
		return "list"
	}
	return "mapping"
}

func lookup(name string) (key, bool) {
	for _, k := range keys {
		if k.name == name {
			return k, true
		}
	}
	return key{}, false
}

func suggest(name string) string {
	for _, k := range keys {
		if strings.EqualFold(k.name, name) {
			return fmt.Sprintf(" (did you mean %q?)", k.name)
		}
	}
	return ""
}

// RegisterFlags defines one flag per key on fs. Flags given on the command
// line override the file; Apply copies them in after Load.
func RegisterFlags(fs *flag.FlagSet) *Overrides {
	o := &Overrides{values: map[string]*string{}}
	for _, k := range keys {
		v := new(string)
		o.values[k.name] = v
		usage := k.help + " (default " + defaultText(k) + ")"
		record := func(s string) error {
			*v = s
			o.set = append(o.set, k.name)
			return k.set(&Config{}, s)
		}
		if k.kind == kBool {
			fs.BoolFunc(k.name, usage, record)
		} else {
			fs.Func(k.name, usage, record)
		}
	}
	return o
}

func defaultText(k key) string {
	switch {
	case k.defText != "":
		return k.defText
	case k.name == "host":
		return "the system host name"
	case k.def == "":
		return "empty"
	}
	return k.def
}

// Overrides are the flags given on the command line.
type Overrides struct {
	values map[string]*string
	set    []string
}

// Apply writes the given flags over c.
func (o *Overrides) Apply(c *Config) error {
	for _, name := range o.set {
		k, _ := lookup(name)
		if err := k.set(c, *o.values[name]); err != nil {
			return fmt.Errorf("--%s: %w", name, err)
		}
	}
	return nil
}

// Validate checks values that have a fixed set of meanings.
func (c *Config) Validate() error {
	var errs []string
	bad := func(key, format string, args ...any) {
		errs = append(errs, key+": "+fmt.Sprintf(format, args...))
	}
	for name, v := range map[string]string{
		"hostDefaultFilePosture":         c.HostDefaultFilePosture,
		"hostDefaultNetworkPosture":      c.HostDefaultNetworkPosture,
		"hostDefaultCapabilitiesPosture": c.HostDefaultCapabilitiesPosture,
		"defaultFilePosture":             c.DefaultFilePosture,
		"defaultNetworkPosture":          c.DefaultNetworkPosture,
		"defaultCapabilitiesPosture":     c.DefaultCapabilitiesPosture,
	} {
		if v != "audit" && v != "block" {
			bad(name, "must be audit or block, not %q", v)
		}
	}
	if _, err := c.Visibility(); err != nil {
		bad("hostVisibility", "%v", err)
	}
	if _, err := c.Enforcers(); err != nil {
		bad("lsm", "%v", err)
	}
	if _, err := c.GRPCAddress(); err != nil {
		bad("gRPC", "%v", err)
	}
	if c.MaxAlertPerSec < 1 {
		bad("maxAlertPerSec", "must be at least 1, not %d", c.MaxAlertPerSec)
	}
	if c.ThrottleSec < 1 {
		bad("throttleSec", "must be at least 1, not %d", c.ThrottleSec)
	}
	if c.SyslogFormat != "rfc5424" && c.SyslogFormat != "cef" {
		bad("syslogFormat", "must be rfc5424 or cef, not %q", c.SyslogFormat)
	}
	if c.Metrics != "" && !isLoopback(c.Metrics) {
		bad("metrics", "%q is not a loopback address; metrics are served on loopback only", c.Metrics)
	}
	if c.PolicyDir == "" {
		bad("policyDir", "must not be empty")
	}
	if c.OTLPEndpoint != "" {
		c.validateOTLP(bad)
	}
	if c.MaxConnections < 0 {
		bad("maxConnections", "must be 0 (derived) or more, not %d", c.MaxConnections)
	}
	if c.MaxConnectionsPerUser < 1 {
		bad("maxConnectionsPerUser", "must be at least 1, not %d", c.MaxConnectionsPerUser)
	}
	if c.MaxStreamsPerUser < 1 {
		bad("maxStreamsPerUser", "must be at least 1, not %d", c.MaxStreamsPerUser)
	}
	if _, err := c.StallTimeout(); err != nil {
		bad("subscriberStallTimeout", "%v", err)
	}
	if c.Host == "" {
		bad("host", "must not be empty")
	}
	if _, err := c.Labels(); err != nil {
		bad("hostLabels", "%v", err)
	}
	if _, err := c.Etcd(); err != nil {
		bad("etcd", "%v", err)
	}
	if len(errs) > 0 {
		return errors.New("config: " + strings.Join(errs, "; "))
	}
	return nil
}

func (c *Config) validateOTLP(bad func(key, format string, args ...any)) {
	if c.OTLPProtocol != "grpc" && c.OTLPProtocol != "http/protobuf" {
		bad("otlpProtocol", "must be grpc or http/protobuf, not %q", c.OTLPProtocol)
	}
	if _, _, err := c.OTLPEventKinds(); err != nil {
		bad("otlpEvents", "%v", err)
	}
	if _, err := c.OTLPHeaderMap(); err != nil {
		bad("otlpHeaders", "%v", err)
	}
	if (c.OTLPClientCert == "") != (c.OTLPClientKey == "") {
		bad("otlpClientCert", "otlpClientCert and otlpClientKey go together")
	}
	if c.OTLPInsecure && (c.OTLPCACert != "" || c.OTLPClientCert != "") {
		bad("otlpInsecure", "plaintext, yet otlpCACert or otlpClientCert is set: drop otlpInsecure to use TLS")
	}
	if c.OTLPBatchSize < 1 || c.OTLPBatchSize > 65536 {
		bad("otlpBatchSize", "must be between 1 and 65536, not %d", c.OTLPBatchSize)
	}
	if c.OTLPQueueLength < 1 {
		bad("otlpQueueLength", "must be at least 1, not %d", c.OTLPQueueLength)
	}
}

// OTLPEventKinds parses otlpEvents.
func (c *Config) OTLPEventKinds() (alerts, logs bool, err error) {
	switch c.OTLPEvents {
	case "alerts":
		return true, false, nil
	case "logs":
		return false, true, nil
	case "both":
		return true, true, nil
	}
	return false, false, fmt.Errorf("must be alerts, logs or both, not %q", c.OTLPEvents)
}

// OTLPHeaderMap parses otlpHeaders: key=value pairs separated by commas,
// values URL-encoded (the format of OTEL_EXPORTER_OTLP_HEADERS).
func (c *Config) OTLPHeaderMap() (map[string]string, error) {
	if strings.TrimSpace(c.OTLPHeaders) == "" {
		return nil, nil
	}
	h := map[string]string{}
	for i, pair := range strings.Split(c.OTLPHeaders, ",") {
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("entry %d is not key=value", i+1)
		}
		val, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("entry %d (%s): bad URL encoding in the value", i+1, k)
		}
		h[k] = val
	}
	return h, nil
}

// StallTimeout parses subscriberStallTimeout (a Go duration: 30s, 2m).
func (c *Config) StallTimeout() (time.Duration, error) {
	d, err := time.ParseDuration(c.SubscriberStallTimeout)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 30s", c.SubscriberStallTimeout)
	}
	if d < time.Second {
		return 0, fmt.Errorf("%s is below the minimum of 1s", d)
	}
	return d, nil
}

// Visibility is the parsed hostVisibility.
type Visibility struct{ Process, File, Network, Capabilities bool }

// Visibility parses hostVisibility. "default" means every scope, as upstream
// does in non-Kubernetes host mode.
func (c *Config) Visibility() (Visibility, error) {
	var v Visibility
	switch strings.TrimSpace(c.HostVisibility) {
	case "default", "":
		return Visibility{true, true, true, true}, nil
	case "none":
		return v, nil
	}
	for _, s := range strings.Split(c.HostVisibility, ",") {
		switch strings.TrimSpace(s) {
		case "process":
			v.Process = true
		case "file":
			v.File = true
		case "network":
			v.Network = true
		case "capabilities":
			v.Capabilities = true
		case "dns", "ima", "":
		default:
			return v, fmt.Errorf("unknown scope %q (want process, file, network, capabilities, none or default)", s)
		}
	}
	return v, nil
}

// Enforcers parses the lsm preference list. "selinux" is accepted from
// upstream configs and skipped; an empty list or "none" means monitor only.
func (c *Config) Enforcers() ([]string, error) {
	var out []string
	for _, s := range strings.Split(c.LSM, ",") {
		switch s = strings.TrimSpace(s); s {
		case "bpf", "apparmor", "fanotify":
			out = append(out, s)
		case "none", "selinux", "":
		default:
			return nil, fmt.Errorf("unknown enforcer %q (want bpf, apparmor, fanotify or none)", s)
		}
	}
	return out, nil
}

// GRPCAddress is the TCP address to listen on. A bare port means loopback.
// Anything not on loopback requires TLS.
func (c *Config) GRPCAddress() (string, error) {
	addr := c.GRPC
	if addr == "" {
		return "", nil
	}
	if _, err := strconv.Atoi(addr); err == nil {
		addr = net.JoinHostPort("127.0.0.1", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q is neither a port nor HOST:PORT", c.GRPC)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("bad port %q", port)
	}
	if !isLoopback(addr) && !c.TLSEnabled {
		return "", fmt.Errorf("%s is not a loopback address; listening there requires tlsEnabled: true", host)
	}
	return addr, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
