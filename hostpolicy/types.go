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

// Policy is one KubeArmorHostPolicy or KubeArmorPolicy document.
type Policy struct {
	APIVersion string   `yaml:"apiVersion,omitempty"`
	Kind       string   `yaml:"kind,omitempty"`
	Metadata   Metadata `yaml:"metadata,omitempty"`
	Spec       Spec     `yaml:"spec,omitempty"`

	// Where the policy came from; filled by the decoder, used by every diagnostic.
	Origin Origin `yaml:"-"`
}

// Metadata holds the parts of a Kubernetes ObjectMeta the agent uses.
type Metadata struct {
	Name        string            `yaml:"name,omitempty"`
	Namespace   string            `yaml:"namespace,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// Spec is the body of a host policy (reference §1.2).
type Spec struct {
	NodeSelector NodeSelector      `yaml:"nodeSelector,omitempty"`
	Selector     Selector          `yaml:"selector,omitempty"` // KubeArmorPolicy only (container.go)
	Process      ProcessRules      `yaml:"process,omitempty"`
	File         FileRules         `yaml:"file,omitempty"`
	Network      NetworkRules      `yaml:"network,omitempty"`
	Capabilities CapabilitiesRules `yaml:"capabilities,omitempty"`
	Syscalls     SyscallRules      `yaml:"syscalls,omitempty"`
	Device       DeviceRules       `yaml:"device,omitempty"`
	AppArmor     string            `yaml:"apparmor,omitempty"`
	Meta         `yaml:",inline"`
}

// Meta is the severity/tags/message/action quartet that spec, each block and
// each rule may carry; normalization fills rule-level Meta by inheritance.
type Meta struct {
	Severity int      `yaml:"severity,omitempty"`
	Tags     []string `yaml:"tags,omitempty"`
	Message  string   `yaml:"message,omitempty"`
	Action   string   `yaml:"action,omitempty"`
}

// NodeSelector chooses the hosts a policy applies to.
type NodeSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels,omitempty"`
}

// Source is one fromSource entry: a binary path, or (syscalls only) a directory.
type Source struct {
	Path      string `yaml:"path,omitempty"`
	Dir       string `yaml:"dir,omitempty"`
	Recursive bool   `yaml:"recursive,omitempty"`
}

type ProcessRules struct {
	MatchPaths       []ProcessPath      `yaml:"matchPaths,omitempty"`
	MatchDirectories []ProcessDirectory `yaml:"matchDirectories,omitempty"`
	MatchPatterns    []ProcessPattern   `yaml:"matchPatterns,omitempty"`
	Meta             `yaml:",inline"`
}

type ProcessPath struct {
	Path        string   `yaml:"path,omitempty"`
	ExecName    string   `yaml:"execname,omitempty"`
	AllowedArgs []string `yaml:"allowedArgs,omitempty"`
	OwnerOnly   bool     `yaml:"ownerOnly,omitempty"`
	Pts         *bool    `yaml:"pts,omitempty"`
	FromSource  []Source `yaml:"fromSource,omitempty"`
	Meta        `yaml:",inline"`
}

type ProcessDirectory struct {
	Dir        string   `yaml:"dir,omitempty"`
	Recursive  bool     `yaml:"recursive,omitempty"`
	OwnerOnly  bool     `yaml:"ownerOnly,omitempty"`
	Pts        *bool    `yaml:"pts,omitempty"`
	FromSource []Source `yaml:"fromSource,omitempty"`
	Meta       `yaml:",inline"`
}

type ProcessPattern struct {
	Pattern   string `yaml:"pattern,omitempty"`
	OwnerOnly bool   `yaml:"ownerOnly,omitempty"`
	Meta      `yaml:",inline"`
}

type FileRules struct {
	MatchPaths       []FilePath      `yaml:"matchPaths,omitempty"`
	MatchDirectories []FileDirectory `yaml:"matchDirectories,omitempty"`
	MatchPatterns    []FilePattern   `yaml:"matchPatterns,omitempty"`
	Meta             `yaml:",inline"`
}

type FilePath struct {
	Path       string   `yaml:"path,omitempty"`
	ReadOnly   bool     `yaml:"readOnly,omitempty"`
	OwnerOnly  bool     `yaml:"ownerOnly,omitempty"`
	Pts        *bool    `yaml:"pts,omitempty"`
	FromSource []Source `yaml:"fromSource,omitempty"`
	Meta       `yaml:",inline"`
}

type FileDirectory struct {
	Dir        string   `yaml:"dir,omitempty"`
	Recursive  bool     `yaml:"recursive,omitempty"`
	ReadOnly   bool     `yaml:"readOnly,omitempty"`
	OwnerOnly  bool     `yaml:"ownerOnly,omitempty"`
	Pts        *bool    `yaml:"pts,omitempty"`
	FromSource []Source `yaml:"fromSource,omitempty"`
	Meta       `yaml:",inline"`
}

type FilePattern struct {
	Pattern   string `yaml:"pattern,omitempty"`
	ReadOnly  bool   `yaml:"readOnly,omitempty"`
	OwnerOnly bool   `yaml:"ownerOnly,omitempty"`
	Meta      `yaml:",inline"`
}

type NetworkRules struct {
	MatchProtocols  []NetworkProtocol `yaml:"matchProtocols,omitempty"`
	MatchDNSQueries []DNSQuery        `yaml:"matchDNSQueries,omitempty"`
	Meta            `yaml:",inline"`
}

type NetworkProtocol struct {
	Protocol   string   `yaml:"protocol,omitempty"`
	Pts        *bool    `yaml:"pts,omitempty"`
	FromSource []Source `yaml:"fromSource,omitempty"`
	Meta       `yaml:",inline"`
}

type DNSQuery struct {
	Domain     string   `yaml:"domain,omitempty"`
	FromSource []Source `yaml:"fromSource,omitempty"`
	Meta       `yaml:",inline"`
}

type CapabilitiesRules struct {
	MatchCapabilities []Capability `yaml:"matchCapabilities,omitempty"`
	Meta              `yaml:",inline"`
}

type Capability struct {
	Capability string   `yaml:"capability,omitempty"`
	FromSource []Source `yaml:"fromSource,omitempty"`
	Meta       `yaml:",inline"`
}

// SyscallRules have no action of their own: they always audit (reference §1.7).
type SyscallRules struct {
	MatchSyscalls []SyscallMatch `yaml:"matchSyscalls,omitempty"`
	MatchPaths    []SyscallPath  `yaml:"matchPaths,omitempty"`
	Meta          `yaml:",inline"`
}

type SyscallMatch struct {
	Syscall    []string `yaml:"syscall,omitempty"`
	FromSource []Source `yaml:"fromSource,omitempty"`
	Meta       `yaml:",inline"`
}

type SyscallPath struct {
	Path       string   `yaml:"path,omitempty"`
	Recursive  bool     `yaml:"recursive,omitempty"`
	Syscall    []string `yaml:"syscall,omitempty"`
	FromSource []Source `yaml:"fromSource,omitempty"`
	Meta       `yaml:",inline"`
}

type DeviceRules struct {
	MatchDevice []Device `yaml:"matchDevice,omitempty"`
	Meta        `yaml:",inline"`
}

type Device struct {
	Class    string `yaml:"class,omitempty"`
	SubClass *int   `yaml:"subClass,omitempty"`
	Protocol *int   `yaml:"protocol,omitempty"`
	Level    *int   `yaml:"level,omitempty"`
	Meta     `yaml:",inline"`
}
