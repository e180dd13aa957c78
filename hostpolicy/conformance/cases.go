package conformance

import (
	"fmt"

	"github.com/armorhost/kubearmor/event"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/hostpolicy/hostpolicytest"
)

// Paths the cases use, under Root. Tiers that run real operations create
// Prog and Other as programs, the rest as files and directories.
const (
	Prog   = Root + "/bin/prog"  // the program doing the operation
	Other  = Root + "/bin/other" // another program
	Target = Root + "/bin/target"
	Etc    = Root + "/etc/"
	Hosts  = Root + "/etc/hosts"
	Passwd = Root + "/etc/passwd"
	Deep   = Root + "/etc/ssh/sshd_config"
	Key    = Root + "/keys/a.key"
	SubKey = Root + "/keys/d/a.key"
	SbinX  = Root + "/sbin/x"
	SbinDX = Root + "/sbin/d/x"
)

// Reasons tiers give for rules they cannot enforce (kubearmor status).
const (
	noKernel          = "no kernel enforcer is available on this host"
	fanotifyCaps      = "Capabilities rules are not enforced by the fanotify tier"
	fanotifyNetSource = "fromSource network rules are not enforced by the cgroup socket programs (they cannot see which program runs)"
	fanotifyNetTTY    = "pts: false network rules are not enforced by the cgroup socket programs"
	apparmorTTY       = "pts: false is not enforced by AppArmor"
	apparmorExecByX   = "unreported: AppArmor decides an exec by x permissions, apart from reads: a file allow-list does not refuse starting a program it does not list"
	// ContainersBPFLSMOnly is the agent's reason for container policies'
	// rules under a tier that cannot scope rules to containers.
	ContainersBPFLSMOnly = "container policies are enforced by BPFLSM only, not by "
	fanotifyDirOpen      = "unreported: the fanotify marks do not ask for directory events (FAN_ONDIR), so a directory opened by itself is not decided"
	noCapTelemetry       = "unreported: the monitor traces no capability checks, so Audit capability rules never alert"
	noCtrMatch           = "unreported: host policies are not matched on container events in user space (agent/pipeline.go)"
	// hostRulesInContainers: a tier that cannot scope rules decides every
	// process by the host rules, a container's too.
	hostRulesInContainers = "unreported: host policies also decide the processes of containers (the tier cannot tell them from the host's)"
)

func pol(name, spec string) string { return hostpolicytest.HostPolicy(name, spec) }

// ctrPol is a KubeArmorPolicy for the container named container.
func ctrPol(name, container, spec string) string {
	return fmt.Sprintf(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: %s
spec:
  selector:
    matchLabels:
      kubearmor.io/container.name: %s
%s`, name, container, spec)
}

func open(obj string) Op  { return Op{Kind: Open, Program: Prog, Object: obj} }
func write(obj string) Op { return Op{Kind: Open, Program: Prog, Object: obj, Write: true} }
func exec(obj string) Op  { return Op{Kind: Exec, Program: Prog, Object: obj} }
func sock(typ, proto string) Op {
	return Op{Kind: Socket, Program: Prog, SockType: typ, Proto: proto}
}

var (
	none         = Want{}
	postureAudit = Want{Verdict: event.VerdictPostureAudit}
	postureBlock = Want{Verdict: event.VerdictPostureBlock}
)

func block(rule string) Want { return Want{Verdict: event.VerdictBlock, Rule: rule} }
func audit(rule string) Want { return Want{Verdict: event.VerdictAudit, Rule: rule} }

var blockPostures = hostpolicy.Postures{File: "block", Network: "block", Capabilities: "block"}

// Cases is the table.
func Cases() []Case {
	var cs []Case
	add := func(c Case) { cs = append(cs, c) }
	with := func(op Op, f func(*Op)) Op { f(&op); return op }

	// ---- file: rule kind x action -------------------------------------
	filePath := func(action string) []string {
		return []string{pol("p", "  file:\n    matchPaths:\n    - path: "+Hosts+"\n  action: "+action+"\n")}
	}
	add(Case{Name: "file path block", Policies: filePath("Block"), Op: open(Hosts), Want: block("p#0")})
	add(Case{Name: "file path block, other file", Policies: filePath("Block"), Op: open(Passwd), Want: none})
	add(Case{Name: "file path audit", Policies: filePath("Audit"), Op: open(Hosts), Want: audit("p#0")})
	add(Case{Name: "file path allow, hit", Policies: filePath("Allow"), Op: open(Hosts), Want: none})
	add(Case{Name: "file path allow, miss, audit posture", Policies: filePath("Allow"), Op: open(Passwd), Want: postureAudit,
		Gaps: map[string]string{"apparmor": "unreported: AppArmor raises no DefaultPosture alert under audit posture (docs/ARCHITECTURE.md tier table)"}})
	add(Case{Name: "file path allow, miss, block posture", Policies: filePath("Allow"), Postures: blockPostures, Op: open(Passwd), Want: postureBlock})
	add(Case{Name: "process allow-list leaves files alone", Postures: blockPostures,
		Policies: []string{pol("p", "  process:\n    matchPaths:\n    - path: "+Target+"\n  action: Allow\n")}, Op: open(Passwd), Want: none})

	fileDir := func(rec string) []string {
		return []string{pol("p", "  file:\n    matchDirectories:\n    - dir: "+Etc+"\n"+rec+"  action: Block\n")}
	}
	add(Case{Name: "file dir, direct", Policies: fileDir(""), Op: open(Hosts), Want: block("p#0")})
	add(Case{Name: "file dir non-recursive, below", Policies: fileDir(""), Op: open(Deep), Want: none})
	add(Case{Name: "file dir recursive, below", Policies: fileDir("      recursive: true\n"), Op: open(Deep), Want: block("p#0")})
	add(Case{Name: "file dir, the directory opened by itself", Policies: fileDir(""), Op: Op{Kind: Open, Program: Prog, Object: Root + "/etc", Dir: true}, Want: block("p#0"),
		Gaps: map[string]string{"fanotify": fanotifyDirOpen}})

	filePat := []string{pol("p", "  file:\n    matchPatterns:\n    - pattern: "+Root+"/keys/*.key\n  action: Audit\n")}
	add(Case{Name: "file pattern", Policies: filePat, Op: open(Key), Want: audit("p#0")})
	add(Case{Name: "file pattern, * does not cross /", Policies: filePat, Op: open(SubKey), Want: none})

	// ---- file: qualifiers -------------------------------------------------
	ro := []string{pol("p", "  file:\n    matchPaths:\n    - path: "+Hosts+"\n      readOnly: true\n  action: Block\n")}
	add(Case{Name: "readOnly block, read", Policies: ro, Op: open(Hosts), Want: none})
	add(Case{Name: "readOnly block, write", Policies: ro, Op: write(Hosts), Want: block("p#0")})
	roAllow := []string{pol("p", "  file:\n    matchPaths:\n    - path: "+Hosts+"\n      readOnly: true\n  action: Allow\n")}
	add(Case{Name: "readOnly allow, read", Policies: roAllow, Postures: blockPostures, Op: open(Hosts), Want: none})
	add(Case{Name: "readOnly allow, write is a miss", Policies: roAllow, Postures: blockPostures, Op: write(Hosts), Want: postureBlock})

	owner := []string{pol("p", "  file:\n    matchPaths:\n    - path: "+Hosts+"\n      ownerOnly: true\n  action: Block\n")}
	add(Case{Name: "ownerOnly block, owner", Policies: owner, Op: with(open(Hosts), func(o *Op) { o.Owner = true }), Want: none})
	add(Case{Name: "ownerOnly block, not the owner", Policies: owner, Op: open(Hosts), Want: block("p#0")})
	ownerRO := []string{pol("p", "  file:\n    matchPaths:\n    - path: "+Hosts+"\n      ownerOnly: true\n      readOnly: true\n  action: Block\n")}
	add(Case{Name: "ownerOnly readOnly block, owner reads", Policies: ownerRO, Op: with(open(Hosts), func(o *Op) { o.Owner = true }), Want: none})
	add(Case{Name: "ownerOnly readOnly block, owner writes", Policies: ownerRO, Op: with(write(Hosts), func(o *Op) { o.Owner = true }), Want: block("p#0")})
	add(Case{Name: "ownerOnly block, another uid", Policies: owner, Op: with(open(Hosts), func(o *Op) { o.UID = 1000 }), Want: block("p#0")})

	src := []string{pol("p", "  file:\n    matchPaths:\n    - path: "+Hosts+"\n      fromSource:\n      - path: "+Prog+"\n  action: Block\n")}
	add(Case{Name: "file fromSource, the source", Policies: src, Op: open(Hosts), Want: block("p#0")})
	add(Case{Name: "file fromSource, another program", Policies: src, Op: with(open(Hosts), func(o *Op) { o.Program = Other }), Want: none})

	tty := []string{pol("p", "  file:\n    matchPaths:\n    - path: "+Hosts+"\n      pts: false\n  action: Block\n")}
	ttyGaps := map[string]string{"apparmor": apparmorTTY}
	add(Case{Name: "terminal condition, with a terminal", Policies: tty, Op: with(open(Hosts), func(o *Op) { o.TTY = true }), Want: block("p#0"), Gaps: ttyGaps})
	add(Case{Name: "terminal condition, without", Policies: tty, Op: open(Hosts), Want: none, Gaps: ttyGaps,
		Fix: "the monitor-only matcher ignored the terminal condition (pts: false) and alerted without a terminal"})

	// ---- precedence ---------------------------------------------------------
	add(Case{Name: "block on the directory beats audit on the file", Op: open(Hosts), Want: block("p#1"),
		Policies: []string{pol("p", "  file:\n    matchPaths:\n    - path: "+Hosts+"\n      action: Audit\n    matchDirectories:\n    - dir: "+Etc+"\n      action: Block\n")},
		Fix:      "the monitor-only matcher reported an Audit rule on a file when a Block rule on its directory also matched; the Block rule decides"})
	add(Case{Name: "block on the directory beats allow on the file", Op: open(Hosts), Want: block("p#1"),
		Policies: []string{pol("p", "  file:\n    matchPaths:\n    - path: "+Hosts+"\n      action: Allow\n    matchDirectories:\n    - dir: "+Etc+"\n      action: Block\n")}})
	add(Case{Name: "block pattern beats audit path", Op: open(Key), Want: block("p#1"),
		Policies: []string{pol("p", "  file:\n    matchPaths:\n    - path: "+Key+"\n      action: Audit\n    matchPatterns:\n    - pattern: "+Root+"/keys/*\n      action: Block\n")}})
	add(Case{Name: "audit beats allow", Op: open(Hosts), Want: audit("q#0"), Postures: blockPostures,
		Policies: []string{pol("p", "  file:\n    matchPaths:\n    - path: "+Hosts+"\n  action: Allow\n"), pol("q", "  file:\n    matchDirectories:\n    - dir: "+Etc+"\n  action: Audit\n")}})
	fromVsAny := []string{pol("p", "  file:\n    matchPaths:\n    - path: "+Hosts+"\n      fromSource:\n      - path: "+Prog+"\n      action: Block\n    - path: "+Hosts+"\n      action: Audit\n")}
	add(Case{Name: "block for the source beats audit for any", Policies: fromVsAny, Op: open(Hosts), Want: block("p#0")})
	add(Case{Name: "audit for any, another program", Policies: fromVsAny, Op: with(open(Hosts), func(o *Op) { o.Program = Other }), Want: audit("p#1")})
	add(Case{Name: "deeper directory decides", Op: open(Deep), Want: audit("p#1"),
		Policies: []string{pol("p", "  file:\n    matchDirectories:\n    - dir: "+Etc+"\n      recursive: true\n      action: Audit\n    - dir: "+Root+"/etc/ssh/\n      action: Audit\n")}})

	// ---- allow-list per source --------------------------------------------
	perSrc := []string{pol("p", "  file:\n    matchPaths:\n    - path: "+Hosts+"\n      fromSource:\n      - path: "+Prog+"\n  action: Allow\n")}
	add(Case{Name: "allow-list of the source, miss", Policies: perSrc, Postures: blockPostures, Op: open(Passwd), Want: postureBlock})
	add(Case{Name: "allow-list of the source, hit", Policies: perSrc, Postures: blockPostures, Op: open(Hosts), Want: none})
	add(Case{Name: "allow-list of another source", Policies: perSrc, Postures: blockPostures, Op: with(open(Passwd), func(o *Op) { o.Program = Other }), Want: none})

	// ---- process ----------------------------------------------------------------
	add(Case{Name: "exec path block", Policies: []string{pol("p", "  process:\n    matchPaths:\n    - path: "+Target+"\n  action: Block\n")}, Op: exec(Target), Want: block("p#0")})
	add(Case{Name: "exec name audit", Policies: []string{pol("p", "  process:\n    matchPaths:\n    - execname: target\n  action: Audit\n")}, Op: exec(Target), Want: audit("p#0")})
	add(Case{Name: "exec dir recursive block", Policies: []string{pol("p", "  process:\n    matchDirectories:\n    - dir: "+Root+"/sbin/\n      recursive: true\n  action: Block\n")}, Op: exec(SbinDX), Want: block("p#0")})
	add(Case{Name: "exec pattern audit", Policies: []string{pol("p", "  process:\n    matchPatterns:\n    - pattern: "+Root+"/sbin/?\n  action: Audit\n")}, Op: exec(SbinX), Want: audit("p#0")})
	execSrc := []string{pol("p", "  process:\n    matchPaths:\n    - path: "+Target+"\n      fromSource:\n      - path: "+Prog+"\n  action: Block\n")}
	add(Case{Name: "exec fromSource, the parent", Policies: execSrc, Op: exec(Target), Want: block("p#0")})
	add(Case{Name: "exec fromSource, another parent", Policies: execSrc, Op: with(exec(Target), func(o *Op) { o.Program = Other }), Want: none})
	execOwner := []string{pol("p", "  process:\n    matchPaths:\n    - path: "+Target+"\n      ownerOnly: true\n  action: Block\n")}
	add(Case{Name: "exec ownerOnly, owner", Policies: execOwner, Op: with(exec(Target), func(o *Op) { o.Owner = true }), Want: none})
	add(Case{Name: "exec ownerOnly, not the owner", Policies: execOwner, Op: exec(Target), Want: block("p#0")})
	execAllow := []string{pol("p", "  process:\n    matchPaths:\n    - path: "+Target+"\n  action: Allow\n")}
	add(Case{Name: "exec allow-list hit", Policies: execAllow, Postures: blockPostures, Op: exec(Target), Want: none})
	add(Case{Name: "exec allow-list miss, block posture", Policies: execAllow, Postures: blockPostures, Op: exec(SbinX), Want: postureBlock})
	// The exec's open of the program is a read the file rules decide
	// (decide.Exec): a program no one may read cannot be run either.
	add(Case{Name: "file path block on a program, exec it", Policies: []string{pol("p", "  file:\n    matchPaths:\n    - path: "+Target+"\n  action: Block\n")}, Op: exec(Target), Want: block("p#0"),
		Fix: "BPF-LSM (6.1, 6.12) and fanotify refused the exec, AppArmor ran it, and the engine and the monitor-only tier said nothing"})
	add(Case{Name: "file dir block on a program's directory, exec it", Policies: []string{pol("p", "  file:\n    matchDirectories:\n    - dir: "+Root+"/sbin/\n      recursive: true\n  action: Block\n")}, Op: exec(SbinDX), Want: block("p#0")})
	add(Case{Name: "file readOnly block on a program, exec it", Policies: []string{pol("p", "  file:\n    matchPaths:\n    - path: "+Target+"\n      readOnly: true\n  action: Block\n")}, Op: exec(Target), Want: none})
	add(Case{Name: "file allow-list, exec a program it does not list", Policies: filePath("Allow"), Postures: blockPostures, Op: exec(Target), Want: postureBlock,
		Gaps: map[string]string{"apparmor": apparmorExecByX}})
	add(Case{Name: "exec terminal condition, without", Policies: []string{pol("p", "  process:\n    matchPaths:\n    - path: "+Target+"\n      pts: false\n  action: Audit\n")},
		Op: exec(Target), Want: none, Gaps: ttyGaps})

	// ---- network ------------------------------------------------------------------
	udp := []string{pol("p", "  network:\n    matchProtocols:\n    - protocol: udp\n  action: Block\n")}
	add(Case{Name: "protocol block", Policies: udp, Op: sock("dgram", "udp"), Want: block("p#0")})
	add(Case{Name: "protocol block, other protocol", Policies: udp, Op: sock("stream", "tcp"), Want: none})
	add(Case{Name: "raw type with a protocol", Policies: []string{pol("p", "  network:\n    matchProtocols:\n    - protocol: raw\n  action: Audit\n")},
		Op: sock("raw", "icmp"), Want: audit("p#0"),
		Fix: "the monitor-only matcher matched a raw socket with a protocol (ICMP) by its protocol only; a raw rule now matches it, as in the kernel"})
	add(Case{Name: "protocol all", Policies: []string{pol("p", "  network:\n    matchProtocols:\n    - protocol: all\n  action: Audit\n")}, Op: sock("stream", "tcp"), Want: audit("p#0")})
	add(Case{Name: "network allow-list, block posture", Policies: []string{pol("p", "  network:\n    matchProtocols:\n    - protocol: tcp\n  action: Allow\n")},
		Postures: blockPostures, Op: sock("dgram", "udp"), Want: postureBlock})
	add(Case{Name: "network fromSource", Policies: []string{pol("p", "  network:\n    matchProtocols:\n    - protocol: udp\n      fromSource:\n      - path: "+Prog+"\n  action: Block\n")},
		Op: sock("dgram", "udp"), Want: block("p#0"), Gaps: map[string]string{"fanotify": fanotifyNetSource}})
	add(Case{Name: "network terminal condition, without", Policies: []string{pol("p", "  network:\n    matchProtocols:\n    - protocol: udp\n      pts: false\n  action: Block\n")},
		Op: sock("dgram", "udp"), Want: none, Gaps: map[string]string{"fanotify": fanotifyNetTTY, "apparmor": apparmorTTY}})

	// ---- capabilities ----------------------------------------------------------------
	capGaps := map[string]string{"fanotify": fanotifyCaps, "monitor": noKernel}
	add(Case{Name: "capability block", Policies: []string{pol("p", "  capabilities:\n    matchCapabilities:\n    - capability: net_raw\n  action: Block\n")},
		Op: Op{Kind: Capability, Program: Prog, Object: "net_raw"}, Want: block("p#0"), Gaps: capGaps})
	add(Case{Name: "capability fromSource audit", Policies: []string{pol("p", "  capabilities:\n    matchCapabilities:\n    - capability: net_raw\n      fromSource:\n      - path: "+Prog+"\n  action: Audit\n")},
		Op: Op{Kind: Capability, Program: Prog, Object: "net_raw"}, Want: audit("p#0"), Gaps: map[string]string{"fanotify": fanotifyCaps, "monitor": noCapTelemetry}})

	// ---- scope: host and container ------------------------------------------------------
	ctr := []string{ctrPol("c", "web", "  file:\n    matchPaths:\n    - path: "+Hosts+"\n  action: Block\n"),
		pol("h", "  file:\n    matchPaths:\n    - path: "+Passwd+"\n  action: Block\n")}
	ctrGaps := map[string]string{"monitor": noKernel, "fanotify": ContainersBPFLSMOnly + "Fanotify", "apparmor": ContainersBPFLSMOnly + "AppArmor"}
	add(Case{Name: "container policy in its container", Policies: ctr, Op: with(open(Hosts), func(o *Op) { o.Container = "web" }), Want: block("c#0"), Gaps: ctrGaps})
	add(Case{Name: "container policy, on the host", Policies: ctr, Op: open(Hosts), Want: none})
	add(Case{Name: "host policy, in a container with its own policies", Policies: ctr, Op: with(open(Passwd), func(o *Op) { o.Container = "web" }), Want: none, Gaps: ctrGaps})
	add(Case{Name: "host policy, in a container without policies", Policies: ctr, Op: with(open(Passwd), func(o *Op) { o.Container = "db" }), Want: none,
		Gaps: map[string]string{"monitor": noCtrMatch, "fanotify": hostRulesInContainers, "apparmor": hostRulesInContainers},
		Fix:  "the decision engine gave a container no container policy selects the host rules; the kernel gives it none (host policies are for the host)"})
	return cs
}
