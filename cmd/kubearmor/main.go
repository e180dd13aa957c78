// Command kubearmor is the host-security agent: the daemon by default, and
// the subcommands an operator uses beside it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/armorhost/kubearmor/agent"
	"github.com/armorhost/kubearmor/agent/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// command is one subcommand: its name, a one-line summary, and its entry point.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"policy", "check policy files without a running agent (policy check FILE...)", runPolicy},
		{"logs", "follow the running agent's alerts and logs (karmor logs, locally)", runLogs},
		{"status", "show what the running agent enforces, drops and throttles", runStatus},
		{"fleet", "list every host's status kept in etcd (fleet status)", runFleet},
		{"detach", "remove the enforcer an agent left in the kernel: BPF-LSM pins, AppArmor profiles (root; --if-stopping UNIT for ExecStopPost=)", runDetach},
		{"version", "print the version", func([]string, io.Writer, io.Writer) int { fmt.Println(version); return 0 }},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		for _, c := range commands() {
			if c.name == args[0] {
				return c.run(args[1:], stdout, stderr)
			}
		}
		if args[0] == "help" {
			return runDaemon([]string{"--help"}, stdout, stderr)
		}
		fmt.Fprintf(stderr, "kubearmor: unknown command %q (see kubearmor --help)\n", args[0])
		return 2
	}
	return runDaemon(args, stdout, stderr)
}

const daemonUsage = `Usage: kubearmor [FLAGS]
       kubearmor COMMAND [ARGS]

kubearmor enforces KubeArmorHostPolicy files on this host and reports what
they match. Run without a command it is the daemon: it reads its configuration
(%[1]s, or built-in defaults when that file is absent), loads every policy in
the policy directory, follows changes to it live, enforces Block and Allow
rules in the kernel, and streams alerts and logs over KubeArmor's gRPC feeder
(karmor logs --gRPC=127.0.0.1:32767 works unchanged).

Signals: SIGHUP reloads the configuration and the policy directory and reopens
log files; SIGTERM or SIGINT stop the daemon and exit 0. On exit, run from a
shell, it detaches every kernel program; under systemd (or with
--detach-on-exit=false) the BPF-LSM enforcer stays pinned in
/sys/fs/bpf/kubearmor (the AppArmor tier's profiles stay loaded) and keeps
enforcing the last rule set until the next agent adopts it, so a restart, an
upgrade or a crash leaves no gap; the unit's ExecStopPost= (kubearmor detach
--if-stopping) removes it on systemctl stop. kubearmor detach, deleting that
directory (BPF-LSM) or a reboot remove it too. The fanotify tier cannot
outlive the process. SIGPIPE is ignored: a client that closes its connection early costs
only that connection. Any other stop is a failure: when a part the daemon
depends on stops (an enforcer's or the monitor's kernel reader, the gRPC
feeder, the policy directory watcher), it logs an ERROR naming the part,
detaches every kernel program and exits 1, so that systemd restarts it.

Commands:
%[2]s
Flags (each overrides the configuration key of the same name):
`

func runDaemon(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kubearmor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", config.DefaultPath, "configuration file; when given explicitly it must exist (default "+config.DefaultPath+")")
	life := agent.DefaultLifecycle()
	detachOnExit := fs.Bool("detach-on-exit", life.DetachOnExit, "detach every kernel program and remove its pins on exit; false keeps the BPF-LSM enforcer pinned (AppArmor: the profiles loaded) and enforcing until the next agent adopts it or kubearmor detach (default true, false under systemd)")
	fs.StringVar(&life.ObjectVersion, "bpf-object-version", "", "name the pinned BPF-LSM state with this instead of the embedded object's hash: makes one build look like another to the adoption logic (tests of the upgrade path)")
	overrides := config.RegisterFlags(fs)
	usage := func() {
		var cmds strings.Builder
		for _, c := range commands() {
			fmt.Fprintf(&cmds, "  %-9s %s\n", c.name, c.summary)
		}
		fmt.Fprintf(fs.Output(), daemonUsage, config.DefaultPath, cmds.String())
		printFlags(fs)
	}
	// The flag package prints usage on every parse error; print it only on
	// request, to stdout, and keep errors to one line on stderr.
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			usage()
			return 0
		}
		fmt.Fprintln(stderr, "Run kubearmor --help for usage.")
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kubearmor: unexpected argument %q (see kubearmor --help)\n", fs.Arg(0))
		return 2
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" {
			explicit = true
		}
	})

	log := newLogger(stderr)
	if os.Geteuid() != 0 {
		log.Warn("not running as root: loading kernel programs will fail")
	}
	stopPipe := ignoreSIGPIPE()
	defer stopPipe()
	a := agent.New(log, version, *configPath, explicit, overrides)
	life.DetachOnExit = *detachOnExit
	a.SetLifecycle(life)
	if err := a.Run(context.Background()); err != nil {
		log.Error("kubearmor failed", "err", err)
		fmt.Fprintf(stderr, "kubearmor: %v\n", err)
		return 1
	}
	return 0
}

// ignoreSIGPIPE keeps SIGPIPE from ever stopping the daemon. Go already
// turns SIGPIPE on a socket into EPIPE on that one write, but one raised by
// a write to a closed stdout or stderr (a restarted journald, a closed
// terminal) would kill the process, and systemd counts death by SIGPIPE as
// a clean exit that Restart=on-failure does not restart. The signal is taken
// and dropped here rather than set to SIG_IGN, which programs the agent runs
// (apparmor_parser) would inherit.
func ignoreSIGPIPE() (stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGPIPE)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-c:
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(c)
		close(done)
	}
}

// newLogger logs in logfmt. Under journald (JOURNAL_STREAM set) the time is
// left out, since the journal stamps every line itself.
func newLogger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if os.Getenv("JOURNAL_STREAM") != "" {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		}
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// printFlags lists flags as "--name VALUE" with their help on the next line,
// which reads better than the flag package's default for long help texts.
func printFlags(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		arg := " VALUE"
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			arg = ""
		}
		fmt.Fprintf(fs.Output(), "  --%s%s\n      %s\n", f.Name, arg, f.Usage)
	})
}
