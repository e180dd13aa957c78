package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	bpflsm "github.com/armorhost/kubearmor/enforce/bpflsm"
)

// runDetach removes the BPF-LSM enforcer an agent left pinned: once no agent
// holds it, its programs detach. It is the way out when no agent runs
// (docs/ARCHITECTURE.md, "Life cycle of kernel objects"), and what the
// systemd unit's ExecStopPost= and the package's removal scripts run.
//
// With --if-stopping UNIT it detaches only when systemd is stopping UNIT
// (a stop job is running: systemctl stop, a package removal, shutdown), and
// keeps the pins when the unit is restarting (systemctl restart, try-restart
// after an upgrade: a restart job) or when there is no job at all (the agent
// crashed or was killed and Restart=always starts it again), so that the
// kernel keeps enforcing until the next agent adopts the pins.
func runDetach(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kubearmor detach", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("pin-root", bpflsm.DefaultPinRoot, "the directory in bpffs the agent pins under")
	unit := fs.String("if-stopping", "", "detach only if systemd runs a stop job for this unit (ExecStopPost=/usr/bin/kubearmor detach --if-stopping %n)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kubearmor detach: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "kubearmor detach: must run as root")
		return 1
	}
	if *unit != "" {
		job, err := systemdJob(*unit)
		if err != nil {
			// Keeping enforcement is the safe side of not knowing; the
			// admin can always run kubearmor detach.
			fmt.Fprintf(stderr, "kubearmor detach: cannot tell whether %s is stopping (%v): kernel enforcement kept\n", *unit, err)
			return 0
		}
		if job != "stop" {
			what := "no job (crash or kill: systemd restarts it)"
			if job != "" {
				what = "a " + job + " job"
			}
			fmt.Fprintf(stdout, "kubearmor detach: %s has %s: kernel enforcement kept for the next agent\n", *unit, what)
			return 0
		}
	}
	// DetachWait returns once the kernel has let go of every link (it may
	// free them a moment after the pins go). Links still held after the
	// wait belong to a running agent: they detach as it exits, which is
	// not a failure of this command (prerm runs it after the stop).
	if err := bpflsm.DetachWait(*root, 5*time.Second); err != nil {
		if !bpflsm.IsStillAttached(err) {
			fmt.Fprintf(stderr, "kubearmor detach: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "kubearmor detach: %v\n", err)
		return 0
	}
	fmt.Fprintf(stdout, "kubearmor detach: removed %s: no BPF-LSM program of the agent is attached any more\n", *root)
	return 0
}

// systemdJob is the type of the job systemd runs for unit ("stop",
// "restart", ...), or "" when there is none.
func systemdJob(unit string) (string, error) {
	out, err := exec.Command("systemctl", "list-jobs", "--no-legend", "--plain", "--full").Output()
	if err != nil {
		return "", fmt.Errorf("systemctl list-jobs: %w", err)
	}
	return jobOf(string(out), unit), nil
}

// jobOf reads systemctl list-jobs lines: "ID UNIT TYPE STATE".
func jobOf(listJobs, unit string) string {
	for _, line := range strings.Split(listJobs, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == unit {
			return f[2]
		}
	}
	return ""
}
