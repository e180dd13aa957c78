package hostpolicy

import (
	"reflect"
	"strings"
	"testing"
)

// containerPolicy is a KubeArmorPolicy with the given matchLabels lines
// (indented six spaces) and spec body (indented two).
func containerPolicy(name, labels, spec string) string {
	return `apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: ` + name + `
spec:
  selector:
    matchLabels:
` + labels + spec
}

const blockShell = "  process:\n    matchPaths:\n    - path: /bin/sh\n  action: Block\n"

// karmorContainerAdd is the exact payload of `karmor vm policy add` for a
// KubeArmorPolicy (karmor-client.md §5).
const karmorContainerAdd = `{"type":"ADDED","object":{"metadata":{"name":"ksp-b","namespace":"container_namespace"},"spec":{"selector":{"matchLabels":{"kubearmor.io/container.name":"web"}},"process":{"matchPaths":[{"path":"/bin/sh"}]},"file":{},"network":{},"capabilities":{},"syscalls":{},"action":"Block"},"status":{}}}`

func TestContainerPolicyValidation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		doc     string
		want    string // substring of the one diagnostic; "" for clean
		warning bool
	}{
		{name: "by name", doc: containerPolicy("p", "      kubearmor.io/container.name: web\n", blockShell)},
		{name: "by name regexp", doc: containerPolicy("p", "      kubearmor.io/container.name: web-[0-9]+\n", blockShell)},
		{name: "by name and image", doc: containerPolicy("p", "      kubearmor.io/container.name: web\n      kubearmor.io/container.image: \"busybox:*\"\n", blockShell)},
		{name: "by labels", doc: containerPolicy("p", "      app: web\n      tier: front\n", blockShell)},
		{name: "no selector", doc: strings.Replace(containerPolicy("p", "", blockShell), "  selector:\n    matchLabels:\n", "", 1),
			want: "spec.selector.matchLabels: missing: a KubeArmorPolicy must select containers"},
		{name: "bad name regexp", doc: containerPolicy("p", "      kubearmor.io/container.name: \"web(\"\n", blockShell),
			want: `p.yaml:8: spec.selector.matchLabels.kubearmor.io/container.name: bad regular expression "web("`},
		{name: "empty image", doc: containerPolicy("p", "      kubearmor.io/container.image: \"\"\n", blockShell),
			want: "spec.selector.matchLabels.kubearmor.io/container.image: empty image"},
		{name: "name with another label", doc: containerPolicy("p", "      kubearmor.io/container.name: web\n      app: web\n", blockShell),
			want: "spec.selector.matchLabels.app: cannot be combined with kubearmor.io/container.name"},
		{name: "nodeSelector in a container policy", doc: strings.Replace(containerPolicy("p", "      app: web\n", blockShell),
			"spec:\n", "spec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n", 1),
			want: "p.yaml:2: kind: must be KubeArmorHostPolicy to use spec.nodeSelector"},
		{name: "selector in a host policy", doc: wrap("  selector:\n    matchLabels:\n      app: web\n" + blockShell),
			want: "spec.selector: selects containers, which only a KubeArmorPolicy does"},
		{name: "other namespace", doc: strings.Replace(containerPolicy("p", "      app: web\n", blockShell), "  name: p\n", "  name: p\n  namespace: default\n", 1),
			want: `warning: metadata.namespace: "default" taken as "container_namespace"`, warning: true},
		{name: "unknown kind", doc: strings.Replace(containerPolicy("p", "      app: web\n", blockShell), "KubeArmorPolicy", "KubeArmorNetworkPolicy", 1),
			want: `kind: must be KubeArmorHostPolicy or KubeArmorPolicy, not "KubeArmorNetworkPolicy"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps, diags := Parse("p.yaml", []byte(tc.doc))
			if tc.want == "" {
				if len(diags) != 0 || len(ps) != 1 {
					t.Fatalf("want a clean policy, got %d policies:\n%s", len(ps), diagStrings(diags))
				}
				return
			}
			if len(diags) != 1 || !strings.Contains(diags[0].String(), tc.want) || diags[0].Warning != tc.warning {
				t.Fatalf("want one diagnostic (warning %v) containing %q, got:\n%s", tc.warning, tc.want, diagStrings(diags))
			}
		})
	}
}

func TestContainerSelectorSelects(t *testing.T) {
	web := ContainerInfo{Name: "web-1", Image: "docker.io/library/busybox:1.36",
		Identities: []string{"namespaceName=container_namespace", "kubearmor.io/container.name=web-1", "app=web", "tier=front"}}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   bool
	}{
		{"exact name", map[string]string{LabelContainerName: "web-1"}, true},
		{"name is anchored", map[string]string{LabelContainerName: "web"}, false},
		{"name regexp", map[string]string{LabelContainerName: "web-[0-9]+"}, true},
		{"name alternatives", map[string]string{LabelContainerName: "db|web-1"}, true},
		{"other name", map[string]string{LabelContainerName: "db"}, false},
		{"image pattern", map[string]string{LabelContainerImage: "*busybox:*"}, true},
		{"image exact", map[string]string{LabelContainerImage: "docker.io/library/busybox:1.36"}, true},
		{"image is not a regexp", map[string]string{LabelContainerImage: "docker.io/library/busybox:1.3."}, false},
		{"other image", map[string]string{LabelContainerImage: "nginx*"}, false},
		{"name and image", map[string]string{LabelContainerName: "web-1", LabelContainerImage: "*busybox*"}, true},
		{"name and wrong image", map[string]string{LabelContainerName: "web-1", LabelContainerImage: "nginx"}, false},
		{"one label", map[string]string{"app": "web"}, true},
		{"all labels", map[string]string{"app": "web", "tier": "front"}, true},
		{"one label missing", map[string]string{"app": "web", "tier": "back"}, false},
		{"namespace identity", map[string]string{"namespaceName": "container_namespace"}, true},
		{"name label as identity is a regexp", map[string]string{LabelContainerName: "web-."}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewContainerSelector(tc.labels)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Selects(web); got != tc.want {
				t.Fatalf("Selects = %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := NewContainerSelector(nil); err == nil {
		t.Error("an empty selector must be refused")
	}
	var none *ContainerSelector
	if none.Selects(web) {
		t.Error("a nil selector selects nothing")
	}
}

func TestCompileKeepsContainerRulesApart(t *testing.T) {
	doc := wrap("  process:\n    matchPaths:\n    - path: /bin/sh\n  action: Block\n") + "---\n" +
		containerPolicy("ksp-web", "      kubearmor.io/container.name: web\n", `  process:
    matchPaths:
    - path: /bin/sh
  file:
    matchDirectories:
    - dir: /etc/
      recursive: true
      action: Allow
  severity: 4
  action: Block
`) + "---\n" + containerPolicy("ksp-all", "      namespaceName: container_namespace\n", "  network:\n    matchProtocols:\n    - protocol: raw\n  action: Audit\n")
	ps, diags := Parse("p.yaml", []byte(doc))
	if diags.HasErrors() {
		t.Fatal(diagStrings(diags))
	}
	rs := Compile(ps, Options{Host: "h", ContainerPostures: Postures{File: "block"}})

	if len(rs.Rules) != 1 || rs.Rules[0].Policy != "test-policy" {
		t.Fatalf("host rules: %+v", rs.Rules)
	}
	if !reflect.DeepEqual(rs.Policies, []string{"ksp-all", "ksp-web", "test-policy"}) {
		t.Errorf("Policies = %v", rs.Policies)
	}
	var names []string
	for _, p := range rs.ContainerPolicies {
		names = append(names, p.Name)
	}
	if !reflect.DeepEqual(names, []string{"ksp-all", "ksp-web"}) {
		t.Errorf("ContainerPolicies = %v", names)
	}
	type brief struct {
		policy   string
		category Category
		value    string
		action   string
		severity int
	}
	var got []brief
	for _, r := range rs.ContainerRules {
		got = append(got, brief{r.Policy, r.Category, r.Value, r.Action, r.Severity})
	}
	want := []brief{
		{"ksp-all", CategoryNetwork, "raw", ActionAudit, 0},
		{"ksp-web", CategoryProcess, "/bin/sh", ActionBlock, 4},
		{"ksp-web", CategoryFile, "/etc/", ActionAllow, 4},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("container rules:\n got %+v\nwant %+v", got, want)
	}
	// The same host and container rule get different IDs, and both are found.
	if rs.ContainerRules[1].ID == rs.Rules[0].ID {
		t.Error("a host and a container rule share an ID")
	}
	for _, r := range append(append([]Rule(nil), rs.Rules...), rs.ContainerRules...) {
		if got, ok := rs.Rule(r.ID); !ok || got.Policy != r.Policy || got.Value != r.Value {
			t.Errorf("Rule(%d) = %v, %v", r.ID, got, ok)
		}
	}
	// Host allow-list mode is not switched on by a container Allow rule.
	if rs.AllowList(CategoryFile) {
		t.Error("a container policy's Allow rule put the host in allow-list mode")
	}
	if rs.ContainerPostures.Of(CategoryProcess) != "block" || rs.ContainerPostures.Of(CategoryNetwork) != "audit" || rs.Postures.Of(CategoryFile) != "audit" {
		t.Errorf("postures: container %+v host %+v", rs.ContainerPostures, rs.Postures)
	}

	web := ContainerInfo{Name: "web", Identities: []string{"namespaceName=container_namespace", "kubearmor.io/container.name=web"}}
	db := ContainerInfo{Name: "db", Identities: []string{"namespaceName=container_namespace", "kubearmor.io/container.name=db"}}
	if got := rs.PoliciesFor(web); !reflect.DeepEqual(got, []string{"ksp-all", "ksp-web"}) {
		t.Errorf("PoliciesFor(web) = %v", got)
	}
	if got := rs.PoliciesFor(db); !reflect.DeepEqual(got, []string{"ksp-all"}) {
		t.Errorf("PoliciesFor(db) = %v", got)
	}
}

// A container policy's rules keep their IDs when only a host policy changes.
func TestContainerRuleIDsAreStable(t *testing.T) {
	ksp := containerPolicy("ksp", "      app: web\n", blockShell)
	one, _ := Parse("a.yaml", []byte(ksp))
	two, _ := Parse("b.yaml", []byte(ksp+"---\n"+wrap("  file:\n    matchPaths:\n    - path: /etc/shadow\n")))
	a := Compile(one, Options{})
	b := Compile(two, Options{})
	if len(a.ContainerRules) != 1 || len(b.ContainerRules) != 1 || a.ContainerRules[0].ID != b.ContainerRules[0].ID {
		t.Fatalf("IDs changed: %+v vs %+v", a.ContainerRules, b.ContainerRules)
	}
}

func TestParseContainerEventKarmorPayload(t *testing.T) {
	ev, diags := ParseContainerEvent([]byte(karmorContainerAdd))
	if ev == nil || diags.HasErrors() {
		t.Fatalf("karmor's payload rejected:\n%s", diagStrings(diags))
	}
	p := ev.Policy
	if p.Kind != KindContainerPolicy || p.APIVersion != APIVersion || p.Metadata.Name != "ksp-b" || p.Metadata.Namespace != ContainerNamespace {
		t.Fatalf("policy = %+v", p)
	}
	for _, want := range []string{"kind: KubeArmorPolicy", "kubearmor.io/container.name: web", "path: /bin/sh"} {
		if !strings.Contains(string(ev.YAML), want) {
			t.Errorf("rendered YAML lacks %q:\n%s", want, ev.YAML)
		}
	}
	// The rendered file is itself a valid policy file.
	ps, diags := Parse("ksp-b.yaml", ev.YAML)
	if diags.HasErrors() || len(ps) != 1 || ps[0].Kind != KindContainerPolicy {
		t.Fatalf("rendered file does not parse back:\n%s\n%s", ev.YAML, diagStrings(diags))
	}
	// Through the host RPC, the same payload is a host policy with a selector: refused.
	if ev, diags := ParseEvent([]byte(karmorContainerAdd)); ev != nil || !strings.Contains(diagStrings(diags), "spec.selector") {
		t.Fatalf("hostPolicy accepted a container policy: %v\n%s", ev, diagStrings(diags))
	}
	// DELETED needs the name only.
	del := strings.Replace(karmorContainerAdd, "ADDED", "DELETED", 1)
	if ev, diags := ParseContainerEvent([]byte(del)); ev == nil || diags.HasErrors() || ev.Type != "DELETED" {
		t.Fatalf("delete: %v\n%s", ev, diagStrings(diags))
	}
}
