package export

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
)

// CEF vendor and product of every record.
const (
	cefVendor  = "KubeArmor"
	cefProduct = "kubearmor-host"
)

// CEFAlert renders an alert as one ArcSight CEF record:
//
//	CEF:0|KubeArmor|kubearmor-host|<version>|<Type>:<Operation>|<name>|<severity>|<extension>
//
// Standard extension keys carry what SIEMs index (rt, dvchost, act,
// outcome, spid, sproc, suid, suser, filePath, msg, cat); the rest goes to
// labelled custom strings cs1..cs6.
func CEFAlert(a *kubearmorpb.Alert, version string) string {
	name := a.Message
	if name == "" {
		name = strings.TrimSpace(a.Action + " " + a.Operation + " " + a.Resource)
	}
	sev := cefSeverity(a.Severity, a.Action, a.Type)
	ext := cefExtension{}
	ext.add("rt", cefTime(a.Timestamp, a.UpdatedTime))
	ext.add("dvchost", a.HostName)
	ext.add("cat", a.Type)
	ext.add("act", a.Action)
	ext.add("outcome", a.Result)
	ext.addInt("spid", a.HostPID)
	ext.add("sproc", a.ProcessName)
	ext.add("suid", strconv.Itoa(int(a.UID)))
	ext.add("suser", a.UserName)
	if a.Operation == "File" {
		ext.add("filePath", a.Resource)
	}
	ext.add("msg", a.Data)
	ext.custom(1, "policyName", a.PolicyName)
	ext.custom(2, "operation", a.Operation)
	ext.custom(3, "resource", a.Resource)
	ext.custom(4, "source", a.Source)
	ext.custom(5, "enforcer", a.Enforcer)
	ext.custom(6, "containerName", a.ContainerName)
	return cefHeader(version, a.Type+":"+a.Operation, name, sev) + ext.String()
}

// CEFLog renders a log (telemetry) as a CEF record of severity 1.
func CEFLog(l *kubearmorpb.Log, version string) string {
	ext := cefExtension{}
	ext.add("rt", cefTime(l.Timestamp, l.UpdatedTime))
	ext.add("dvchost", l.HostName)
	ext.add("cat", l.Type)
	ext.add("outcome", l.Result)
	ext.addInt("spid", l.HostPID)
	ext.add("sproc", l.ProcessName)
	ext.add("suid", strconv.Itoa(int(l.UID)))
	ext.add("suser", l.UserName)
	if l.Operation == "File" {
		ext.add("filePath", l.Resource)
	}
	ext.add("msg", l.Data)
	ext.custom(2, "operation", l.Operation)
	ext.custom(3, "resource", l.Resource)
	ext.custom(4, "source", l.Source)
	ext.custom(6, "containerName", l.ContainerName)
	return cefHeader(version, l.Type+":"+l.Operation, strings.TrimSpace(l.Operation+" "+l.Resource), 1) + ext.String()
}

func cefHeader(version, class, name string, sev int) string {
	return fmt.Sprintf("CEF:0|%s|%s|%s|%s|%s|%d|", cefHeaderEscape(cefVendor), cefHeaderEscape(cefProduct),
		cefHeaderEscape(version), cefHeaderEscape(class), cefHeaderEscape(name), sev)
}

// cefSeverity maps to CEF's 0-10: the policy's own severity (1-10) when it
// has one, else Block 7, SystemEvent 5, Audit 3.
func cefSeverity(policySeverity, action, typ string) int {
	if n, err := strconv.Atoi(policySeverity); err == nil && n >= 0 && n <= 10 {
		return n
	}
	switch {
	case action == "Block":
		return 7
	case typ == "SystemEvent":
		return 5
	}
	return 3
}

func cefTime(ts int64, updated string) string {
	if t, err := time.Parse(time.RFC3339Nano, updated); err == nil {
		return strconv.FormatInt(t.UnixMilli(), 10)
	}
	return strconv.FormatInt(ts*1000, 10)
}

// Header fields escape backslash and pipe; newlines are not allowed.
var cefHeaderReplacer = strings.NewReplacer(`\`, `\\`, `|`, `\|`, "\n", " ", "\r", " ")

func cefHeaderEscape(s string) string { return cefHeaderReplacer.Replace(s) }

// Extension values escape backslash and equals, and encode newlines.
var cefValueReplacer = strings.NewReplacer(`\`, `\\`, `=`, `\=`, "\n", `\n`, "\r", `\r`)

type cefExtension struct{ b strings.Builder }

func (e *cefExtension) add(key, value string) {
	if value == "" {
		return
	}
	if e.b.Len() > 0 {
		e.b.WriteByte(' ')
	}
	e.b.WriteString(key)
	e.b.WriteByte('=')
	e.b.WriteString(cefValueReplacer.Replace(value))
}

func (e *cefExtension) addInt(key string, v int32) {
	if v != 0 {
		e.add(key, strconv.Itoa(int(v)))
	}
}

func (e *cefExtension) custom(n int, label, value string) {
	if value == "" {
		return
	}
	e.add(fmt.Sprintf("cs%d", n), value)
	e.add(fmt.Sprintf("cs%dLabel", n), label)
}

func (e *cefExtension) String() string { return e.b.String() }
