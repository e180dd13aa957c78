package client

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
	"github.com/armorhost/kubearmor/feeder/statuspb"
)

// FormatAlert renders an alert as one line:
//
//	2026-11-23 18:21:32 MatchedHostPolicy hsp-block-sleep Block "Permission denied" Process /usr/bin/sleep 1 | pid=1000 uid=0 /usr/bin/sleep <- /usr/bin/bash
func FormatAlert(v any) string {
	a := v.(*kubearmorpb.Alert)
	var b strings.Builder
	b.WriteString(when(a.Timestamp, a.UpdatedTime))
	b.WriteByte(' ')
	b.WriteString(a.Type)
	switch {
	case a.Operation == "AlertThreshold":
		fmt.Fprintf(&b, " %s: more than %d alerts/s, dropping its alerts for %ds", orDash(a.PolicyName), a.MaxAlertsPerSec, a.DroppingAlertsInterval)
		return b.String()
	case a.Type == "SystemEvent":
		fmt.Fprintf(&b, " %s: %s", a.Operation, a.Message)
		return b.String()
	}
	fmt.Fprintf(&b, " %s %s %s %s %s", orDash(a.PolicyName), orDash(a.Action), quoteIfSpace(orDash(a.Result)), orDash(a.Operation), orDash(a.Resource))
	process(&b, a.HostPID, a.UID, a.ProcessName, a.ParentProcessName, a.ContainerName)
	if a.Message != "" {
		fmt.Fprintf(&b, " msg=%q", a.Message)
	}
	return b.String()
}

// FormatLog renders a log as one line.
func FormatLog(v any) string {
	l := v.(*kubearmorpb.Log)
	var b strings.Builder
	b.WriteString(when(l.Timestamp, l.UpdatedTime))
	b.WriteByte(' ')
	b.WriteString(l.Type)
	if l.Type == "SystemEvent" {
		fmt.Fprintf(&b, " %s: %s", l.Operation, l.Data)
		return b.String()
	}
	fmt.Fprintf(&b, " %s %s %s", quoteIfSpace(orDash(l.Result)), orDash(l.Operation), orDash(l.Resource))
	process(&b, l.HostPID, l.UID, l.ProcessName, l.ParentProcessName, l.ContainerName)
	return b.String()
}

// FormatMessage renders an agent message as karmor does:
// "<time>  <cluster>  <host>  [<level>]  <text>".
func FormatMessage(v any) string {
	m := v.(*kubearmorpb.Message)
	t := strings.TrimSuffix(strings.Replace(m.UpdatedTime, "T", " ", 1), "Z")
	return fmt.Sprintf("%s  %s  %s  [%s]  %s", t, m.ClusterName, m.HostName, m.Level, m.Message)
}

func process(b *strings.Builder, pid, uid int32, exe, parent, container string) {
	fmt.Fprintf(b, " | pid=%d uid=%d %s", pid, uid, orDash(exe))
	if parent != "" {
		fmt.Fprintf(b, " <- %s", parent)
	}
	if container != "" {
		fmt.Fprintf(b, " container=%s", container)
	}
}

func when(ts int64, updated string) string {
	t, err := time.Parse(time.RFC3339Nano, updated)
	if err != nil {
		t = time.Unix(ts, 0)
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func quoteIfSpace(s string) string {
	if strings.ContainsAny(s, " \t") {
		return strconv.Quote(s)
	}
	return s
}

// WriteStatus renders `kubearmor status` for a terminal.
func WriteStatus(w io.Writer, st *statuspb.Status) {
	fmt.Fprintf(w, "Host:       %s (cluster %s)\n", st.Host, st.Cluster)
	if st.Version != "" {
		fmt.Fprintf(w, "Version:    %s\n", st.Version)
	}
	if st.StartedUnix > 0 {
		fmt.Fprintf(w, "Started:    %s\n", time.Unix(st.StartedUnix, 0).Local().Format("2006-01-02 15:04:05"))
	}
	fmt.Fprintf(w, "Enforcer:   %s", orDash(st.Enforcer))
	if st.EnforcerReason != "" {
		fmt.Fprintf(w, " (%s)", st.EnforcerReason)
	}
	fmt.Fprintln(w)
	if st.MonitorHooks != "" {
		fmt.Fprintf(w, "Monitor:    syscall hooks: %s\n", st.MonitorHooks)
	}
	rules := 0
	for _, p := range st.Policies {
		rules += int(p.Rules)
	}
	fmt.Fprintf(w, "Policies:   %d loaded, %d rules, %d rules not enforced\n", len(st.Policies), rules, len(st.Unenforced))
	for _, p := range st.Policies {
		fmt.Fprintf(w, "  %-40s %3d rules  %-6s %s\n", p.Name, p.Rules, p.Action, p.File)
	}
	for _, u := range st.Unenforced {
		fmt.Fprintf(w, "  NOT ENFORCED  %s: %s: %s\n", u.Policy, u.Rule, u.Reason)
	}
	for _, f := range st.Files {
		for _, e := range f.Errors {
			fmt.Fprintf(w, "  REJECTED  %s: %s\n", f.Name, e)
		}
	}
	writeEtcd(w, st.Etcd, time.Now())
	for _, warn := range st.Warnings {
		fmt.Fprintf(w, "Warning:    %s\n", warn)
	}
	f := st.Feeder
	if f == nil {
		return
	}
	fmt.Fprintf(w, "Events:     %d alerts, %d logs, %d messages published\n", f.AlertsPublished, f.LogsPublished, f.MessagesPublished)
	fmt.Fprintf(w, "Drops:      %d alerts, %d logs, %d messages (slow subscribers)\n", f.AlertsDropped, f.LogsDropped, f.MessagesDropped)
	fmt.Fprintf(w, "Throttled:  %d alerts", f.AlertsThrottled)
	if len(f.ThrottlingNow) > 0 {
		fmt.Fprintf(w, " (throttling now: %s)", strings.Join(f.ThrottlingNow, ", "))
	}
	fmt.Fprintln(w)
	names := make([]string, 0, len(f.ThrottledByPolicy))
	for n := range f.ThrottledByPolicy {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-40s %d\n", n, f.ThrottledByPolicy[n])
	}
	fmt.Fprintf(w, "Subscribers: %d\n", len(f.Subscribers))
	for _, s := range f.Subscribers {
		fmt.Fprintf(w, "  %-8s %-24s delivered %d, dropped %d, queued %d/%d\n", s.Kind, s.Name, s.Delivered, s.Dropped, s.Queued, s.Capacity)
	}
	writeStages(w, st.Stages)
}

// writeEtcd prints the etcd policy source's state: whether it follows
// etcd, the revision in force, and how old the last sync and the cache are.
func writeEtcd(w io.Writer, e *statuspb.EtcdSource, now time.Time) {
	if e == nil {
		return
	}
	fmt.Fprintf(w, "Etcd:       %s, %s %s, revision %d, %d keys", e.State, e.Endpoints, e.Prefix, e.Revision, e.Keys)
	if e.FromCache {
		fmt.Fprintf(w, ", enforcing the cache (etcd not read since start)")
	}
	fmt.Fprintln(w)
	if e.Error != "" {
		fmt.Fprintf(w, "  error       %s\n", e.Error)
	}
	fmt.Fprintf(w, "  last sync   %s\n", sinceWhen(e.LastSyncUnix, now))
	fmt.Fprintf(w, "  cache       %s\n", sinceWhen(e.CacheWrittenUnix, now))
	if e.HostKey != "" {
		fmt.Fprintf(w, "  host key    %s\n", e.HostKey)
	}
}

// sinceWhen is a time with its age, or "never".
func sinceWhen(unix int64, now time.Time) string {
	if unix == 0 {
		return "never"
	}
	t := time.Unix(unix, 0)
	return fmt.Sprintf("%s (%s ago)", t.Local().Format("2006-01-02 15:04:05"), max(now.Sub(t), 0).Round(time.Second))
}

// writeStages prints the one accounting of loss: every stage of the event
// path with what it received, passed on and lost, and why.
func writeStages(w io.Writer, stages []*statuspb.Stage) {
	if len(stages) == 0 {
		return
	}
	fmt.Fprintf(w, "Stages:     received, passed on, dropped (filtered, pending)\n")
	for _, s := range stages {
		fmt.Fprintf(w, "  %-40s %d, %d, %d", s.Name, s.Received, s.Passed, s.Dropped)
		if s.Filtered > 0 || s.Pending > 0 {
			fmt.Fprintf(w, " (%d, %d)", s.Filtered, s.Pending)
		}
		switch {
		case s.FailingSinceUnix > 0:
			fmt.Fprintf(w, "  %s (since %s)", s.State, time.Unix(s.FailingSinceUnix, 0).Local().Format("2006-01-02 15:04:05"))
		case s.State != "":
			fmt.Fprintf(w, "  %s", s.State)
		default:
			fmt.Fprintf(w, "  ok")
		}
		fmt.Fprintln(w)
	}
}
