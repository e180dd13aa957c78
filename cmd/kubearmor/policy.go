package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/armorhost/kubearmor/enforce/apparmor"
	"github.com/armorhost/kubearmor/hostpolicy"
)

const policyUsage = `Usage: kubearmor policy check [--quiet] [--host NAME] [--label KEY=VALUE]... FILE...
       kubearmor policy render --apparmor [--host NAME] [--posture audit|block] FILE...

check: checks KubeArmorHostPolicy (and KubeArmorPolicy) files exactly as the
daemon would, without a running agent: decoding, validation and normalization.
Prints one line per problem as FILE:LINE: FIELD: MESSAGE (warnings say
"warning:"), then a summary per file with the rules each policy compiles to on
this host (or on --host NAME). The host carries the labels the agent sets
itself (kubernetes.io/os, kubernetes.io/arch, kubearmor.io/os-id and
kubearmor.io/os-version-id of this machine) and each --label KEY=VALUE (or
KEY=VALUE,KEY=VALUE), as the configuration's hostLabels would add them.

render --apparmor: prints the AppArmor profiles the AppArmor enforcement tier
would load for these policies, for review, as one file apparmor_parser loads
as it is. Nothing is loaded. --posture is the default posture of allow-lists
(hostDefault*Posture).

Exit status: 0 when every file is accepted (warnings allowed), 1 when any file
is rejected, 2 on a usage error.
`

func runPolicy(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, policyUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "render" {
		return runRender(args[1:], stdout, stderr)
	}
	if args[0] != "check" {
		fmt.Fprintf(stderr, "kubearmor policy: unknown subcommand %q\n\n%s", args[0], policyUsage)
		return 2
	}
	fs := flag.NewFlagSet("kubearmor policy check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), policyUsage); fs.PrintDefaults() }
	quiet := fs.Bool("quiet", false, "print problems only, no summary")
	host, _ := os.Hostname()
	fs.StringVar(&host, "host", host, "host name to evaluate nodeSelector against")
	extra := map[string]string{}
	fs.Func("label", "a host label KEY=VALUE (repeatable, or a comma list), as hostLabels in the configuration", func(s string) error {
		l, err := hostpolicy.ParseLabels(s)
		for k, v := range l {
			extra[k] = v
		}
		return err
	})
	if err := fs.Parse(args[1:]); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, "kubearmor policy check: no files given\n\n"+policyUsage)
		return 2
	}
	status := 0
	for _, file := range fs.Args() {
		data, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintf(stdout, "%s: %v\n", file, err)
			status = 1
			continue
		}
		policies, diags := hostpolicy.Parse(file, data)
		for _, d := range diags {
			fmt.Fprintln(stdout, d.String())
		}
		if diags.HasErrors() {
			status = 1
			if !*quiet {
				fmt.Fprintf(stdout, "%s: rejected\n", file)
			}
			continue
		}
		if *quiet {
			continue
		}
		opts := hostpolicy.Options{Host: host, Labels: hostpolicy.ReadHostLabels(extra)}
		rs := hostpolicy.Compile(policies, opts)
		for _, p := range policies {
			n := 0
			for _, r := range rs.Rules {
				if r.Policy == p.Metadata.Name {
					n++
				}
			}
			applies := "applies to this host"
			if !opts.Selects(p) {
				applies = "does not apply to host " + host + " (labels " + hostpolicy.FormatLabels(opts.Labels) + ")"
			}
			fmt.Fprintf(stdout, "%s: ok: %s (%d rules; %s)\n", file, p.Metadata.Name, n, applies)
		}
	}
	return status
}

func runRender(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kubearmor policy render", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), policyUsage) }
	asAppArmor := fs.Bool("apparmor", false, "render AppArmor profiles")
	posture := fs.String("posture", "audit", "default posture of allow-lists: audit or block")
	host, _ := os.Hostname()
	fs.StringVar(&host, "host", host, "host name to evaluate nodeSelector against")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if !*asAppArmor || fs.NArg() == 0 || (*posture != "audit" && *posture != "block") {
		fmt.Fprint(stderr, policyUsage)
		return 2
	}
	var all []*hostpolicy.Policy
	status := 0
	for _, file := range fs.Args() {
		data, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", file, err)
			status = 1
			continue
		}
		policies, diags := hostpolicy.Parse(file, data)
		for _, d := range diags {
			fmt.Fprintln(stderr, d.String())
		}
		if diags.HasErrors() {
			status = 1
			continue
		}
		all = append(all, policies...)
	}
	if status != 0 {
		return status
	}
	p := hostpolicy.Postures{File: *posture, Network: *posture, Capabilities: *posture}
	// One file that apparmor_parser loads as it is.
	fmt.Fprint(stdout, apparmor.RenderFile(hostpolicy.Compile(all, hostpolicy.Options{Host: host, Postures: p})))
	return 0
}
