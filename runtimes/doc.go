// Package runtimes tells which Docker or containerd container a kernel
// event comes from. A Resolver discovers the containers already running,
// follows each runtime's event stream, and keeps a cache keyed by what
// kernel events carry (cgroup2 id, pid and mount namespace inodes), so that
// attributing an event never calls a runtime API.
//
// # Wiring into the pipeline
//
// Start it beside the monitor: r, err := runtimes.New(opts); go r.Run(ctx);
// defer r.Close(). Per event, c, ok := r.Wait(ctx, ev.CgroupID, ev.PidNS,
// ev.MntNS): a cache hit costs what Lookup costs (tens of ns, no
// allocation); a host event answers from a negative cache after its
// cgroup's first event; only an event from a container whose start its
// runtime has not reported yet blocks, for at most Options.MaxWait. A
// pipeline that must never block can call Lookup instead and accept that
// such first events look like the host's.
//
// When ok, the Alert/Log fields are (upstream's non-Kubernetes mode):
//
//	NamespaceName  = c.NamespaceName  ("container_namespace" unless a k8s/kubearmor.io namespace label says otherwise)
//	PodName        = c.PodName        (the container name)
//	ContainerID    = c.ID
//	ContainerName  = c.Name
//	ContainerImage = c.Image
//	Labels         = c.Labels         ("k=v,..." sorted by key)
//
// and Type becomes "MatchedPolicy" for alerts and "ContainerLog" for logs
// (instead of MatchedHostPolicy/HostLog). When not ok the event is the
// host's and these fields stay empty. c.Identities() are the "k=v" strings
// container policies select on; c.CgroupID/PidNS/MntNS are the keys to
// scope kernel rules to one container; Options.OnChange says when the set
// changed. Status() is for `kubearmor status`: a runtime that is absent or
// went away is reported there and retried with backoff, never fatal.
package runtimes
