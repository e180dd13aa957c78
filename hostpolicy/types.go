// Package hostpolicy owns KubeArmorHostPolicy: its types, decoding from YAML
// files and karmor's JSON, validation with file:line and field paths,
// normalization, node selection, and compilation to an enforcer-neutral RuleSet.
//
// The data flow is one way: Decode -> Validate -> Normalize -> Selects -> Compile.
// Every stage is a pure function of its input so that the policy store can
// re-run it on each file change and keep the last good result on failure.
package hostpolicy

// APIVersion and the kinds this package accepts.
const (
	APIVersion     = "security.kubearmor.com/v1"
	KindHostPolicy = "KubeArmorHostPolicy"
)

// Action values, exactly as they appear in policies and alerts.
const (
	ActionAllow = "Allow"
	ActionAudit = "Audit"
	ActionBlock = "Block"
)

// Policy is one KubeArmorHostPolicy document.
type Policy struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Metadata `yaml:"metadata"`
	Spec       Spec     `yaml:"spec"`

	// Where the policy came from; filled by the decoder, used by every diagnostic.
	Origin Origin `yaml:"-"`
}

// Metadata holds the parts of a Kubernetes ObjectMeta the agent uses.
type Metadata struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// Spec is the body of a host policy (reference §1.2).
type Spec struct {
	NodeSelector NodeSelector      `yaml:"nodeSelector"`
	Process      ProcessRules      `yaml:"process"`
	File         FileRules         `yaml:"file"`
	Network      NetworkRules      `yaml:"network"`
	Capabilities CapabilitiesRules `yaml:"capabilities"`
	Syscalls     SyscallRules      `yaml:"syscalls"`
	Device       DeviceRules       `yaml:"device"`
	AppArmor     string            `yaml:"apparmor"`
	Meta         `yaml:",inline"`
}

// Meta is the severity/tags/message/action quartet that spec, each block and
// each rule may carry; normalization fills rule-level Meta by inheritance.
type Meta struct {
	Severity int      `yaml:"severity"`
	Tags     []string `yaml:"tags"`
	Message  string   `yaml:"message"`
	Action   string   `yaml:"action"`
}

// NodeSelector chooses the hosts a policy applies to.
type NodeSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

// Source is one fromSource entry: a binary path, or (syscalls only) a directory.
type Source struct {
	Path      string `yaml:"path"`
	Dir       string `yaml:"dir"`
	Recursive bool   `yaml:"recursive"`
}

type ProcessRules struct {
	MatchPaths       []ProcessPath      `yaml:"matchPaths"`
	MatchDirectories []ProcessDirectory `yaml:"matchDirectories"`
	MatchPatterns    []ProcessPattern   `yaml:"matchPatterns"`
	Meta             `yaml:",inline"`
}

type ProcessPath struct {
	Path        string   `yaml:"path"`
	ExecName    string   `yaml:"execname"`
	AllowedArgs []string `yaml:"allowedArgs"`
	OwnerOnly   bool     `yaml:"ownerOnly"`
	Pts         *bool    `yaml:"pts"`
	FromSource  []Source `yaml:"fromSource"`
	Meta        `yaml:",inline"`
}

type ProcessDirectory struct {
	Dir        string   `yaml:"dir"`
	Recursive  bool     `yaml:"recursive"`
	OwnerOnly  bool     `yaml:"ownerOnly"`
	Pts        *bool    `yaml:"pts"`
	FromSource []Source `yaml:"fromSource"`
	Meta       `yaml:",inline"`
}

type ProcessPattern struct {
	Pattern   string `yaml:"pattern"`
	OwnerOnly bool   `yaml:"ownerOnly"`
	Meta      `yaml:",inline"`
}

type FileRules struct {
	MatchPaths       []FilePath      `yaml:"matchPaths"`
	MatchDirectories []FileDirectory `yaml:"matchDirectories"`
	MatchPatterns    []FilePattern   `yaml:"matchPatterns"`
	Meta             `yaml:",inline"`
}

type FilePath struct {
	Path       string   `yaml:"path"`
	ReadOnly   bool     `yaml:"readOnly"`
	OwnerOnly  bool     `yaml:"ownerOnly"`
	Pts        *bool    `yaml:"pts"`
	FromSource []Source `yaml:"fromSource"`
	Meta       `yaml:",inline"`
}

type FileDirectory struct {
	Dir        string   `yaml:"dir"`
	Recursive  bool     `yaml:"recursive"`
	ReadOnly   bool     `yaml:"readOnly"`
	OwnerOnly  bool     `yaml:"ownerOnly"`
	Pts        *bool    `yaml:"pts"`
	FromSource []Source `yaml:"fromSource"`
	Meta       `yaml:",inline"`
}

type FilePattern struct {
	Pattern   string `yaml:"pattern"`
	ReadOnly  bool   `yaml:"readOnly"`
	OwnerOnly bool   `yaml:"ownerOnly"`
	Meta      `yaml:",inline"`
}

type NetworkRules struct {
	MatchProtocols  []NetworkProtocol `yaml:"matchProtocols"`
	MatchDNSQueries []DNSQuery        `yaml:"matchDNSQueries"`
	Meta            `yaml:",inline"`
}

type NetworkProtocol struct {
	Protocol   string   `yaml:"protocol"`
	Pts        *bool    `yaml:"pts"`
	FromSource []Source `yaml:"fromSource"`
	Meta       `yaml:",inline"`
}

type DNSQuery struct {
	Domain     string   `yaml:"domain"`
	FromSource []Source `yaml:"fromSource"`
	Meta       `yaml:",inline"`
}

type CapabilitiesRules struct {
	MatchCapabilities []Capability `yaml:"matchCapabilities"`
	Meta              `yaml:",inline"`
}

type Capability struct {
	Capability string   `yaml:"capability"`
	FromSource []Source `yaml:"fromSource"`
	Meta       `yaml:",inline"`
}

// SyscallRules have no action of their own: they always audit (reference §1.7).
type SyscallRules struct {
	MatchSyscalls []SyscallMatch `yaml:"matchSyscalls"`
	MatchPaths    []SyscallPath  `yaml:"matchPaths"`
	Meta          `yaml:",inline"`
}

type SyscallMatch struct {
	Syscall    []string `yaml:"syscall"`
	FromSource []Source `yaml:"fromSource"`
	Meta       `yaml:",inline"`
}

type SyscallPath struct {
	Path       string   `yaml:"path"`
	Recursive  bool     `yaml:"recursive"`
	Syscall    []string `yaml:"syscall"`
	FromSource []Source `yaml:"fromSource"`
	Meta       `yaml:",inline"`
}

type DeviceRules struct {
	MatchDevice []Device `yaml:"matchDevice"`
	Meta        `yaml:",inline"`
}

type Device struct {
	Class    string `yaml:"class"`
	SubClass *int   `yaml:"subClass"`
	Protocol *int   `yaml:"protocol"`
	Level    *int   `yaml:"level"`
	Meta     `yaml:",inline"`
}
