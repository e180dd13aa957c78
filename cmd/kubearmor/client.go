package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/armorhost/kubearmor/agent/config"
	"github.com/armorhost/kubearmor/feeder/client"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

const logsUsage = `Usage: kubearmor logs [--json] [--filter policy|system|all] [--messages] [--limit N] [--addr ADDR]

Follows the alerts (and logs) of the running agent, like karmor logs, until
Ctrl-C. By default one human-readable line per event; --json prints exactly
what karmor logs --json prints, one JSON object per line.

  --filter policy   alerts (default)
  --filter system   logs (telemetry)
  --filter all      both

ADDR is the agent's unix socket (default: the socket of the local configuration,
/run/kubearmor/kubearmor.sock) or HOST:PORT.

Exit status: 0 on Ctrl-C or after --limit events, 1 when the agent cannot be
reached or ends the stream.
`

const statusUsage = `Usage: kubearmor status [--json] [--addr ADDR]

Asks the running agent what it enforces: the enforcer in use (and why stronger
ones were not usable), the policies in force and their files, rules it cannot
enforce, rejected policy files, subscribers, and every drop or throttle count.

Exit status: 0 when the agent answered, 1 when it cannot be reached.
`

// defaultAddr is the socket of the local configuration, or its TCP address
// when the socket is disabled.
func defaultAddr() string {
	cfg, err := config.Load(config.DefaultPath, false)
	if err != nil {
		return config.Defaults().Socket
	}
	if cfg.Socket != "" {
		return cfg.Socket
	}
	addr, _ := cfg.GRPCAddress()
	return addr
}

func runLogs(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kubearmor logs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	jsonOut := fs.Bool("json", false, "")
	filter := fs.String("filter", client.FilterPolicy, "")
	messages := fs.Bool("messages", false, "")
	limit := fs.Int("limit", 0, "")
	addr := fs.String("addr", "", "")
	if code, done := parseSub(fs, args, logsUsage, stdout, stderr); done {
		return code
	}
	switch *filter {
	case client.FilterPolicy, client.FilterSystem, client.FilterAll:
	default:
		fmt.Fprintf(stderr, "kubearmor logs: --filter must be policy, system or all, not %q\n", *filter)
		return 2
	}
	if *addr == "" {
		*addr = defaultAddr()
	}
	c, err := client.Dial(*addr, nil)
	if err != nil {
		fmt.Fprintf(stderr, "kubearmor logs: %v\n", err)
		return 1
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = c.Watch(ctx, stdout, client.WatchOptions{Filter: *filter, Messages: *messages, JSON: *jsonOut, Limit: *limit})
	if err != nil {
		fmt.Fprintf(stderr, "kubearmor logs: %s: %v\n", *addr, err)
		return 1
	}
	return 0
}

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kubearmor status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	jsonOut := fs.Bool("json", false, "")
	addr := fs.String("addr", "", "")
	if code, done := parseSub(fs, args, statusUsage, stdout, stderr); done {
		return code
	}
	if *addr == "" {
		*addr = defaultAddr()
	}
	c, err := client.Dial(*addr, nil)
	if err != nil {
		fmt.Fprintf(stderr, "kubearmor status: %v\n", err)
		return 1
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "kubearmor status: cannot reach the agent at %s: %v\n", *addr, err)
		return 1
	}
	if *jsonOut {
		fmt.Fprintln(stdout, protoJSON(st))
		return 0
	}
	client.WriteStatus(stdout, st)
	return 0
}

// parseSub parses a subcommand's flags; done reports that the caller should
// return code (help was printed, or the flags were wrong).
func parseSub(fs *flag.FlagSet, args []string, usage string, stdout, stderr io.Writer) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0, true
		}
		fmt.Fprintf(stderr, "%s", usage)
		return 2, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n\n%s", fs.Arg(0), usage)
		return 2, true
	}
	return 0, false
}

func protoJSON(m proto.Message) string {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return fmt.Sprintf("{\"error\": %q}", err.Error())
	}
	return string(b)
}
