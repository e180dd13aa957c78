package otlp

import (
	"strconv"
	"strings"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"

	"github.com/armorhost/kubearmor/feeder/export/jsonenc"
	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
)

// scopeName is the instrumentation scope of the records.
const scopeName = "github.com/armorhost/kubearmor"

// Event names of the records: alerts and logs are told apart by them (and
// by kubearmor.type, the event's own Type).
const (
	alertEvent = "kubearmor.alert"
	logEvent   = "kubearmor.log"
)

// resourceAttrs describe the agent: the service and the host.
func resourceAttrs(o Options) []attribute.KeyValue {
	kv := []attribute.KeyValue{attribute.String("service.name", "kubearmor")}
	if o.Version != "" {
		kv = append(kv, attribute.String("service.version", o.Version))
	}
	if o.HostName != "" {
		kv = append(kv, attribute.String("host.name", o.HostName))
	}
	if o.HostID != "" {
		kv = append(kv, attribute.String("host.id", o.HostID))
	}
	return kv
}

// alertRecord is an alert as an OTLP log record: the body is the alert
// exactly as `karmor logs --json` prints it (the same encoding as the JSON
// lines file), the attributes the fields a pipeline filters on.
// r starts as the exporter's template; b is scratch space for the
// attributes, which the record copies.
func alertRecord(r *sdklog.Record, b *attrs, a *kubearmorpb.Alert) {
	body := jsonenc.AppendAlert(nil, a)
	r.SetEventName(alertEvent)
	r.SetBody(attribute.StringValue(bytesString(body)))
	r.SetTimestamp(eventTime(a.Timestamp, a.UpdatedTime))
	r.SetObservedTimestamp(time.Now())
	sev := alertSeverity(a.Severity)
	r.SetSeverity(sev)
	r.SetSeverityText(sev.String())

	b.common(common{a.HostName, a.ClusterName, a.NamespaceName, a.PodName, a.Labels, a.ContainerID, a.ContainerName, a.ContainerImage,
		a.HostPID, a.HostPPID, a.PID, a.PPID, a.UID, a.UserName, a.ProcessName, a.ParentProcessName, a.Source, a.Cwd, a.TTY,
		a.Type, a.Operation, a.Resource, a.Data, a.Result})
	b.str("kubearmor.policy_name", a.PolicyName)
	if n, err := strconv.Atoi(a.Severity); err == nil {
		b.kv = append(b.kv, attribute.Int("kubearmor.severity", n))
	} else {
		b.str("kubearmor.severity", a.Severity)
	}
	tags := a.ATags
	if len(tags) == 0 && a.Tags != "" {
		tags = strings.Split(a.Tags, ",")
	}
	if len(tags) > 0 {
		b.kv = append(b.kv, attribute.StringSlice("kubearmor.tags", tags))
	}
	b.str("kubearmor.message", a.Message)
	b.str("kubearmor.action", a.Action)
	b.str("kubearmor.enforcer", a.Enforcer)
	if a.MaxAlertsPerSec != 0 {
		b.kv = append(b.kv, attribute.Int("kubearmor.max_alerts_per_sec", int(a.MaxAlertsPerSec)),
			attribute.Int("kubearmor.dropping_alerts_interval", int(a.DroppingAlertsInterval)))
	}
	r.SetAttributes(b.kv...)
}

// logRecord is a log (telemetry) as an OTLP log record.
func logRecord(r *sdklog.Record, b *attrs, l *kubearmorpb.Log) {
	body := jsonenc.AppendLog(nil, l)
	r.SetEventName(logEvent)
	r.SetBody(attribute.StringValue(bytesString(body)))
	r.SetTimestamp(eventTime(l.Timestamp, l.UpdatedTime))
	r.SetObservedTimestamp(time.Now())
	r.SetSeverity(otellog.SeverityInfo)
	r.SetSeverityText(otellog.SeverityInfo.String())
	b.common(common{l.HostName, l.ClusterName, l.NamespaceName, l.PodName, l.Labels, l.ContainerID, l.ContainerName, l.ContainerImage,
		l.HostPID, l.HostPPID, l.PID, l.PPID, l.UID, l.UserName, l.ProcessName, l.ParentProcessName, l.Source, l.Cwd, l.TTY,
		l.Type, l.Operation, l.Resource, l.Data, l.Result})
	r.SetAttributes(b.kv...)
}

// bytesString is b as a string without copying it: the encoded body is the
// record's alone and never written again.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// alertSeverity maps KubeArmor's policy severity (1 lowest .. 10 highest)
// onto OpenTelemetry's severity numbers: 1-4 INFO..INFO4, 5-7 WARN..WARN3,
// 8-10 ERROR..ERROR3. An alert without one (DefaultPosture, notices) is
// WARN.
func alertSeverity(s string) otellog.Severity {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	switch {
	case err != nil || n < 1:
		return otellog.SeverityWarn
	case n <= 4:
		return otellog.SeverityInfo1 + otellog.Severity(n-1)
	case n <= 7:
		return otellog.SeverityWarn1 + otellog.Severity(n-5)
	case n <= 10:
		return otellog.SeverityError1 + otellog.Severity(n-8)
	}
	return otellog.SeverityError4
}

// eventTime is when the event happened: UpdatedTime (RFC 3339, nanoseconds)
// or, failing that, Timestamp (seconds).
func eventTime(sec int64, updated string) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, updated); err == nil {
		return t
	}
	if sec != 0 {
		return time.Unix(sec, 0)
	}
	return time.Time{}
}

// common are the fields alerts and logs share.
type common struct {
	host, cluster, namespace, pod, labels, containerID, containerName, image string
	hostPID, hostPPID, pid, ppid, uid                                        int32
	userName, process, parent, source, cwd, tty                              string
	typ, operation, resource, data, result                                   string
}

// attrs is the attribute list of the record being built; the exporter
// keeps them in a pool, as the record copies what it is given.
type attrs struct{ kv []attribute.KeyValue }

// reset empties the list, letting go of the event's strings.
func (b *attrs) reset() *attrs {
	clear(b.kv)
	b.kv = b.kv[:0]
	return b
}

// str adds a string attribute unless it is empty (as the JSON omits it).
func (b *attrs) str(k, v string) {
	if v != "" {
		b.kv = append(b.kv, attribute.String(k, v))
	}
}

func (b *attrs) int(k string, v int32) {
	if v != 0 {
		b.kv = append(b.kv, attribute.Int(k, int(v)))
	}
}

// common adds the shared fields: OpenTelemetry semantic conventions where
// one exists (host, process, container, user, k8s), kubearmor.* otherwise.
func (b *attrs) common(c common) {
	b.str("host.name", c.host)
	b.int("process.pid", c.hostPID)
	b.int("process.parent_pid", c.hostPPID)
	b.str("process.executable.path", c.process)
	// Source is the acting process's command line, except for an exec,
	// where it is the parent and Resource is the new command line.
	if c.operation == "Process" && c.resource != "" {
		b.str("process.command_line", c.resource)
	} else if c.source != c.process {
		b.str("process.command_line", c.source)
	}
	b.str("process.working_directory", c.cwd)
	b.kv = append(b.kv, attribute.String("user.id", strconv.Itoa(int(c.uid))))
	b.str("user.name", c.userName)
	b.str("container.id", c.containerID)
	b.str("container.name", c.containerName)
	if c.image != "" {
		name, tag := splitImage(c.image)
		b.str("container.image.name", name)
		if tag != "" {
			b.kv = append(b.kv, attribute.StringSlice("container.image.tags", []string{tag}))
		}
	}
	b.str("k8s.namespace.name", c.namespace)
	b.str("k8s.pod.name", c.pod)

	b.str("kubearmor.cluster", c.cluster)
	b.str("kubearmor.labels", c.labels)
	b.str("kubearmor.type", c.typ)
	b.str("kubearmor.operation", c.operation)
	b.str("kubearmor.resource", c.resource)
	b.str("kubearmor.data", c.data)
	b.str("kubearmor.result", c.result)
	b.str("kubearmor.source", c.source)
	b.str("kubearmor.parent_process_name", c.parent)
	b.int("kubearmor.pid", c.pid) // in the process's pid namespace
	b.int("kubearmor.ppid", c.ppid)
	b.str("kubearmor.tty", c.tty)
}

// splitImage splits "registry:5000/name:tag" into the name and the tag; a
// digest (@sha256:...) stays with the name.
func splitImage(image string) (name, tag string) {
	if strings.Contains(image, "@") {
		return image, ""
	}
	i := strings.LastIndexByte(image, ':')
	if i < 0 || strings.Contains(image[i:], "/") {
		return image, ""
	}
	return image[:i], image[i+1:]
}
