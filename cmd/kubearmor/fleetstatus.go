package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/armorhost/kubearmor/agent/config"
	"github.com/armorhost/kubearmor/policysource/etcd"
)

const fleetUsage = `Usage: kubearmor fleet status [--json] [--config FILE] [--endpoints URLS]
                              [--prefix PREFIX] [--ca FILE] [--cert FILE --key FILE]
                              [--user NAME --password-file FILE] [--timeout DURATION]

Lists every host of the fleet that keeps its status in etcd: each agent
started with etcdEndpoints writes PREFIX/HOST under a lease (10 s), rewrites
it whenever what it enforces changes, and revokes it when it stops, so a host
listed is an agent running now or dead for less than the lease. For each host:
the enforcement tier in use ("monitor only" when none), the agent's version,
the last etcd revision of the policy prefix it applied, its labels (those
nodeSelector.matchLabels is matched against), every policy in force with its
source (etcd:KEY or the policy file) and the key's revision, the rules the tier
cannot enforce and why, and the documents it refuses.

etcd is reached as the agent reaches it: the etcd* keys of the configuration
file (etcdEndpoints, etcdHostPrefix, etcdCA, etcdCert, etcdKey, etcdUser,
etcdPasswordFile); each flag overrides its key.

  --config FILE          configuration to read the etcd keys from
                         (default /etc/kubearmor/kubearmor.yaml; ignored if absent)
  --endpoints URLS       comma list of http:// or https:// URLs (etcdEndpoints)
  --prefix PREFIX        the hosts' key prefix (etcdHostPrefix; default /kubearmor/hosts/)
  --ca FILE              CA of the etcd servers' certificates (etcdCA)
  --cert, --key FILE     client certificate and key (etcdCert, etcdKey)
  --user NAME            etcd user (etcdUser), with --password-file (etcdPasswordFile)
  --timeout DURATION     give up reaching etcd after this long (default 10s)
  --json                 a JSON array of the hosts' keys as the agents wrote them
                         (fields host, version, tier, labels, policies[name, source,
                         revision, rules], notEnforced, rejected, etcdRevision, updated)

Without etcd access, the same keys are what this prints:
  etcdctl get --prefix /kubearmor/hosts/ --print-value-only

Exit status: 0 when the hosts were listed (none is not an error); 1 when etcd
cannot be reached or a key under the prefix is not a host's status (the others
are still listed); 2 on wrong usage or configuration.
`

func runFleet(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) == 0 {
			fmt.Fprint(stderr, fleetUsage)
			return 2
		}
		fmt.Fprint(stdout, fleetUsage)
		return 0
	}
	if args[0] != "status" {
		fmt.Fprintf(stderr, "kubearmor fleet: unknown command %q\n\n%s", args[0], fleetUsage)
		return 2
	}
	fs := flag.NewFlagSet("kubearmor fleet status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	jsonOut := fs.Bool("json", false, "")
	configPath := fs.String("config", config.DefaultPath, "")
	// Each flag overrides the configuration key it names.
	overrides := map[string]func(*config.Config) *string{
		"endpoints":     func(c *config.Config) *string { return &c.EtcdEndpoints },
		"prefix":        func(c *config.Config) *string { return &c.EtcdHostPrefix },
		"ca":            func(c *config.Config) *string { return &c.EtcdCA },
		"cert":          func(c *config.Config) *string { return &c.EtcdCert },
		"key":           func(c *config.Config) *string { return &c.EtcdKey },
		"user":          func(c *config.Config) *string { return &c.EtcdUser },
		"password-file": func(c *config.Config) *string { return &c.EtcdPasswordFile },
	}
	for name := range overrides {
		fs.String(name, "", "")
	}
	timeout := fs.Duration("timeout", 10*time.Second, "")
	if code, done := parseSub(fs, args[1:], fleetUsage, stdout, stderr); done {
		return code
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	cfg, err := config.Load(*configPath, set["config"])
	if err != nil {
		fmt.Fprintf(stderr, "kubearmor fleet status: %v\n", err)
		return 2
	}
	for name, field := range overrides {
		if set[name] {
			*field(cfg) = fs.Lookup(name).Value.String()
		}
	}
	ec, err := cfg.Etcd()
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "kubearmor fleet status: %v\n", err)
		return 2
	case ec == nil:
		fmt.Fprintf(stderr, "kubearmor fleet status: no etcd endpoints: set etcdEndpoints in %s or pass --endpoints\n", *configPath)
		return 2
	case ec.HostPrefix == "":
		fmt.Fprintf(stderr, "kubearmor fleet status: etcdHostPrefix is empty (hosts do not publish their status); pass --prefix\n")
		return 2
	}
	cli, err := etcd.Dial(etcd.Config{Endpoints: ec.Endpoints, CA: ec.CA, Cert: ec.Cert, Key: ec.Key, User: ec.User, PasswordFile: ec.PasswordFile})
	if err != nil {
		fmt.Fprintf(stderr, "kubearmor fleet status: %v\n", err)
		return 2
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	hosts, bad, err := etcd.ScanHosts(ctx, cli, ec.HostPrefix)
	if err != nil {
		fmt.Fprintf(stderr, "kubearmor fleet status: etcd %s: %v\n", strings.Join(ec.Endpoints, ","), err)
		return 1
	}
	if *jsonOut {
		if hosts == nil {
			hosts = []etcd.HostStatus{}
		}
		b, _ := json.MarshalIndent(hosts, "", "  ")
		fmt.Fprintln(stdout, string(b))
	} else {
		writeFleet(stdout, hosts, ec.HostPrefix, time.Now())
	}
	for _, b := range bad {
		fmt.Fprintf(stderr, "kubearmor fleet status: %s\n", b)
	}
	if len(bad) > 0 {
		return 1
	}
	return 0
}

// writeFleet prints one block per host.
func writeFleet(w io.Writer, hosts []etcd.HostStatus, prefix string, now time.Time) {
	if len(hosts) == 0 {
		fmt.Fprintf(w, "no hosts under %s (no agent with etcdEndpoints is running, or they use another etcdHostPrefix)\n", prefix)
		return
	}
	for i, h := range hosts {
		if i > 0 {
			fmt.Fprintln(w)
		}
		tier := h.Tier
		if tier == "" {
			tier = "monitor only"
		}
		fmt.Fprintf(w, "%s  tier %s  version %s  etcd revision %d  updated %s (%s ago)\n",
			h.Host, tier, h.Version, h.Revision, h.Updated.UTC().Format(time.RFC3339), now.Sub(h.Updated).Round(time.Second))
		var labels []string
		for _, k := range slices.Sorted(maps.Keys(h.Labels)) {
			labels = append(labels, k+"="+h.Labels[k])
		}
		fmt.Fprintf(w, "  labels: %s\n", orNone(strings.Join(labels, ", ")))
		fmt.Fprintf(w, "  policies in force: %d\n", len(h.Policies))
		for _, p := range h.Policies {
			rev := ""
			if p.Revision != 0 {
				rev = fmt.Sprintf(", revision %d", p.Revision)
			}
			fmt.Fprintf(w, "    %s (%s%s, %d rules)\n", p.Name, p.Source, rev, p.Rules)
		}
		if len(h.NotEnforced) > 0 {
			fmt.Fprintf(w, "  rules not enforced: %d\n", len(h.NotEnforced))
			for _, r := range h.NotEnforced {
				fmt.Fprintf(w, "    %s\n", r)
			}
		}
		if len(h.Rejected) > 0 {
			fmt.Fprintf(w, "  rejected documents: %d\n", len(h.Rejected))
			for _, r := range h.Rejected {
				fmt.Fprintf(w, "    %s\n", r)
			}
		}
	}
	fmt.Fprintf(w, "\n%d hosts\n", len(hosts))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
