package runtimes

import (
	"sort"
	"strings"
)

// Runtime names, as Container.Runtime and RuntimeStatus.Runtime carry them.
const (
	Docker     = "docker"
	Containerd = "containerd"
)

// DefaultNamespace is NamespaceName for containers outside Kubernetes, as
// upstream KubeArmor reports it.
const DefaultNamespace = "container_namespace"

// Labels that name a container's namespace or name when a runtime sets them.
const (
	labelK8sNamespace  = "io.kubernetes.pod.namespace"
	labelKANamespace   = "kubearmor.io/namespace"
	LabelContainerName = "kubearmor.io/container.name"
)

// nameLabels, in order of preference, give a containerd container a
// friendlier name than its id.
var nameLabels = []string{LabelContainerName, "nerdctl/name", "io.kubernetes.container.name"}

// Container is what an event from inside a container is attributed to.
// Values are immutable once the Resolver publishes them.
type Container struct {
	ID            string // full runtime id
	Name          string // docker: name without "/"; containerd: a name label, else the id
	Image         string // the image reference the container was created from
	NamespaceName string // "container_namespace", or the k8s/kubearmor.io namespace label
	PodName       string // the container name, as upstream's non-k8s mode reports it
	Labels        string // the runtime's labels, "k=v" sorted by key, comma-joined

	Runtime          string // Docker or Containerd
	RuntimeNamespace string // containerd namespace ("default", "k8s.io", "moby", ...)

	// Attribution keys, as the kernel side sees them; 0 when unknown.
	HostPID    uint32 // the init process at discovery
	CgroupID   uint64 // cgroup2 id (inode of the cgroup2 directory)
	CgroupPath string // cgroup2 path (v1 memory path on v1-only hosts)
	PidNS      uint32
	MntNS      uint32
}

// maxLabelsLen bounds the Labels string of one container; pairs beyond it
// are left out (images often carry many OCI annotations as labels).
const maxLabelsLen = 2048

// newContainer fills the derived fields from the runtime's metadata.
func newContainer(runtime, runtimeNS, id, name, image string, labels map[string]string) Container {
	if name == "" {
		for _, l := range nameLabels {
			if v := labels[l]; v != "" {
				name = v
				break
			}
		}
	}
	if name == "" {
		name = id
	}
	ns := DefaultNamespace
	if v := labels[labelK8sNamespace]; v != "" {
		ns = v
	} else if v := labels[labelKANamespace]; v != "" {
		ns = v
	}
	return Container{
		ID:               id,
		Name:             name,
		Image:            image,
		NamespaceName:    ns,
		PodName:          name,
		Labels:           JoinLabels(labels, maxLabelsLen),
		Runtime:          runtime,
		RuntimeNamespace: runtimeNS,
	}
}

// JoinLabels renders labels as "k=v,k=v" sorted by key, leaving out whole
// pairs that would make the result longer than limit (0: no limit).
func JoinLabels(labels map[string]string, limit int) string {
	if len(labels) == 0 {
		return ""
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		n := len(k) + 1 + len(labels[k])
		if b.Len() > 0 {
			n++
		}
		if limit > 0 && b.Len()+n > limit {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(labels[k])
	}
	return b.String()
}

// Identities are the "k=v" strings a container policy's matchLabels select
// on, as upstream forms them outside Kubernetes: the namespace, the
// container name, then the runtime's labels.
func (c *Container) Identities() []string {
	ids := []string{"namespaceName=" + c.NamespaceName, LabelContainerName + "=" + c.Name}
	if c.Labels == "" {
		return ids
	}
	for kv := range strings.SplitSeq(c.Labels, ",") {
		if !strings.HasPrefix(kv, LabelContainerName+"=") {
			ids = append(ids, kv)
		}
	}
	return ids
}
