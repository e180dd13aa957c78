package hostpolicy

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// KubeArmorPolicy outside Kubernetes (reference §6.3): the same rules as a
// host policy, scoped to the containers its spec.selector picks instead of
// to the host.
const (
	KindContainerPolicy = "KubeArmorPolicy"

	// ContainerNamespace is the namespace every container policy gets
	// outside Kubernetes, whatever metadata.namespace says.
	ContainerNamespace = "container_namespace"

	// LabelContainerName selects containers by name; its value is a
	// regular expression that must match the whole name.
	LabelContainerName = "kubearmor.io/container.name"
	// LabelContainerImage selects containers by the image reference they
	// were created from; "*" stands for any run of characters. This label
	// is this agent's own: upstream selects on container labels only.
	LabelContainerImage = "kubearmor.io/container.image"
)

// Selector is spec.selector of a KubeArmorPolicy.
type Selector struct {
	MatchLabels map[string]string `yaml:"matchLabels,omitempty"`
}

// ContainerInfo is what a container policy's selector is matched against.
type ContainerInfo struct {
	Name  string
	Image string
	// Identities are "k=v" strings: namespaceName=<ns>, the container's
	// name label and its runtime labels (runtimes.Container.Identities).
	Identities []string
}

// Container is a running container as an enforcer scopes rules to it: the
// agent builds the list from the runtimes, enforce/bpflsm consumes it.
//
// Scoping: a task whose cgroup is a known container's (or, for a container
// whose cgroup id is unknown, whose pid and mount namespaces are) gets the
// rules of the container policies that select that container, and never
// the host's: host policies describe the host, as upstream's are. Every
// other task, including one that unshared its own namespaces, gets the host
// rules, so leaving the host's pid namespace is no way around them. Rules
// follow the cgroup a task is in, not its parent cgroups: a container that
// creates child cgroups takes its processes there out of its scope (and
// under the host rules).
type Container struct {
	ID       string
	CgroupID uint64 // cgroup2 id; 0 when unknown
	PidNS    uint32 // used only when CgroupID is 0
	MntNS    uint32
	Info     ContainerInfo
}

// ContainerPolicy is one compiled container policy: its name and which
// containers it applies to. Its rules are the ContainerRules whose Policy
// is Name.
type ContainerPolicy struct {
	Name     string
	Selector *ContainerSelector
}

// ContainerSelector decides whether a container policy applies to a
// container. Every label must match: the name label as an anchored regular
// expression, the image label as a pattern, any other label as an exact
// "k=v" identity of the container.
type ContainerSelector struct {
	name   *regexp.Regexp
	image  *regexp.Regexp
	labels []string // "k=v", sorted
}

// NewContainerSelector compiles spec.selector.matchLabels. An empty
// selector is an error: it would pick no container at all.
func NewContainerSelector(labels map[string]string) (*ContainerSelector, error) {
	if len(labels) == 0 {
		return nil, fmt.Errorf("no labels: a %s must select containers (e.g. %s: <name>)", KindContainerPolicy, LabelContainerName)
	}
	s := &ContainerSelector{}
	for k, v := range labels {
		switch k {
		case LabelContainerName:
			re, err := regexp.Compile("^(?:" + v + ")$")
			if err != nil {
				return nil, fmt.Errorf("%s: bad regular expression %q: %v", k, v, err)
			}
			s.name = re
		case LabelContainerImage:
			if strings.TrimSpace(v) == "" {
				return nil, fmt.Errorf("%s: empty image", k)
			}
			s.image = regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(v), `\*`, ".*") + "$")
		default:
			s.labels = append(s.labels, k+"="+v)
		}
	}
	sort.Strings(s.labels)
	return s, nil
}

// Selects reports whether the selector picks the container.
func (s *ContainerSelector) Selects(c ContainerInfo) bool {
	if s == nil {
		return false
	}
	if s.name != nil && !s.name.MatchString(c.Name) {
		return false
	}
	if s.image != nil && !s.image.MatchString(c.Image) {
		return false
	}
	for _, want := range s.labels {
		found := false
		for _, id := range c.Identities {
			if id == want {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// PoliciesFor returns the names of the container policies that apply to
// c, sorted.
func (rs *RuleSet) PoliciesFor(c ContainerInfo) []string {
	var out []string
	for _, p := range rs.ContainerPolicies {
		if p.Selector.Selects(c) {
			out = append(out, p.Name)
		}
	}
	return out
}

// Of returns the default posture ("audit" or "block") of a category.
// Process and file share the file posture (reference §1.7).
func (p Postures) Of(c Category) string {
	switch postureGroup(c) {
	case CategoryNetwork:
		return p.Network
	case CategoryCapabilities:
		return p.Capabilities
	}
	return p.File
}

// ParseContainerEvent is ParseEvent for PolicyService.containerPolicy: the
// object is a KubeArmorPolicy unless it says otherwise.
func ParseContainerEvent(data []byte) (*Event, Diagnostics) {
	return parseEvent(data, KindContainerPolicy)
}

func compileContainerPolicy(rs *RuleSet, ids *idAllocator, p *Policy) {
	if p.Spec.AppArmor != "" {
		return // native AppArmor rules: skipped whole, as for host policies
	}
	sel, err := NewContainerSelector(p.Spec.Selector.MatchLabels)
	if err != nil {
		return // Validate reports it; a policy that selects nothing has no rules
	}
	rs.Policies = append(rs.Policies, p.Metadata.Name)
	rs.ContainerPolicies = append(rs.ContainerPolicies, ContainerPolicy{Name: p.Metadata.Name, Selector: sel})
	c := compiler{rs: rs, ids: ids, p: p, container: true}
	c.policy()
}

// containerSelector checks what a KubeArmorPolicy has instead of a
// nodeSelector (reference §6.3).
func (v *validator) containerSelector(p *Policy) {
	const path = "spec.selector.matchLabels"
	s := &p.Spec
	if len(s.NodeSelector.MatchLabels) > 0 {
		v.sink.errorf("kind", "must be %s to use spec.nodeSelector (a %s selects containers with %s)", KindHostPolicy, KindContainerPolicy, path)
	}
	if ns := p.Metadata.Namespace; ns != "" && ns != ContainerNamespace {
		v.sink.warnf("metadata.namespace", "%q taken as %q: outside Kubernetes every container policy is in %s", ns, ContainerNamespace, ContainerNamespace)
	}
	labels := s.Selector.MatchLabels
	if len(labels) == 0 {
		v.sink.errorf(path, "missing: a %s must select containers (e.g. %s: <name>)", KindContainerPolicy, LabelContainerName)
		return
	}
	if _, ok := labels[LabelContainerName]; ok {
		for k := range labels {
			if k != LabelContainerName && k != LabelContainerImage {
				v.sink.errorf(join(path, k), "cannot be combined with %s (only %s can)", LabelContainerName, LabelContainerImage)
			}
		}
	}
	for k, val := range labels {
		if _, err := NewContainerSelector(map[string]string{k: val}); err != nil {
			v.sink.errorf(join(path, k), "%v", strings.TrimPrefix(err.Error(), k+": "))
		}
	}
}
