package runtimes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	apievents "github.com/containerd/containerd/api/events"
	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
)

// containerd is spoken to through its published gRPC API module
// (github.com/containerd/containerd/api) rather than the full client
// library: the handful of read-only calls needed here do not justify the
// client's snapshotter, content and image dependencies. The services used
// (version, namespaces, containers, tasks, events v1) are the same on
// containerd 1.6, 1.7 and 2.x.

// namespaceHeader is the gRPC metadata key that scopes a containerd call to
// one namespace.
const namespaceHeader = "containerd-namespace"

func inNamespace(ctx context.Context, ns string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, namespaceHeader, ns)
}

// containerdSession lists the running containers of every namespace and
// follows containerd's events until the stream breaks or ctx ends.
func (r *Resolver) containerdSession(ctx context.Context, sock string, connected func(version string)) error {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("containerd client for %s: %w", sock, err)
	}
	defer conn.Close()
	f := containerdFollower{
		r:          r,
		containers: containersapi.NewContainersClient(conn),
		tasks:      tasksapi.NewTasksClient(conn),
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	ver, err := versionapi.NewVersionClient(conn).Version(cctx, &emptypb.Empty{})
	cancel()
	if err != nil {
		return fmt.Errorf("containerd version: %w", err)
	}

	// Subscribe before listing, so nothing started in between is missed.
	// No filter: events of every namespace.
	ectx, stop := context.WithCancel(ctx)
	defer stop()
	stream, err := eventsapi.NewEventsClient(conn).Subscribe(ectx, &eventsapi.SubscribeRequest{})
	if err != nil {
		return fmt.Errorf("containerd subscribe: %w", err)
	}

	cctx, cancel = context.WithTimeout(ctx, callTimeout)
	nss, err := namespacesapi.NewNamespacesClient(conn).List(cctx, &namespacesapi.ListNamespacesRequest{})
	cancel()
	if err != nil {
		return fmt.Errorf("containerd list namespaces: %w", err)
	}
	var cs []Container
	for _, ns := range nss.Namespaces {
		r.store.addNamespaces(ns.Name)
		more, err := f.list(ctx, ns.Name)
		if err != nil {
			return err
		}
		cs = append(cs, more...)
	}
	r.store.replace(Containerd, cs)
	r.store.setLive(Containerd, true)
	connected(ver.Version)

	events := make(chan *eventsAndErr, 1)
	go func() {
		for {
			env, err := stream.Recv()
			select {
			case events <- &eventsAndErr{env.GetNamespace(), env.GetTopic(), env.GetEvent(), err}:
			case <-ectx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-events:
			if e.err != nil {
				if errors.Is(e.err, io.EOF) {
					e.err = errors.New("event stream closed")
				}
				return fmt.Errorf("containerd events: %w", e.err)
			}
			f.handle(ctx, e.namespace, e.topic, e.event)
		}
	}
}

type eventsAndErr struct {
	namespace, topic string
	event            *anypb.Any
	err              error
}

type containerdFollower struct {
	r          *Resolver
	containers containersapi.ContainersClient
	tasks      tasksapi.TasksClient
}

// list returns the containers of ns whose task runs.
func (f containerdFollower) list(ctx context.Context, ns string) ([]Container, error) {
	cctx, cancel := context.WithTimeout(inNamespace(ctx, ns), callTimeout)
	defer cancel()
	tasks, err := f.tasks.List(cctx, &tasksapi.ListTasksRequest{})
	if err != nil {
		return nil, fmt.Errorf("containerd list tasks in %s: %w", ns, err)
	}
	pids := map[string]uint32{}
	for _, t := range tasks.Tasks {
		if t.Pid != 0 && t.Status != tasktypes.Status_STOPPED {
			pids[t.ID] = t.Pid
		}
	}
	if len(pids) == 0 {
		return nil, nil
	}
	list, err := f.containers.List(cctx, &containersapi.ListContainersRequest{})
	if err != nil {
		return nil, fmt.Errorf("containerd list containers in %s: %w", ns, err)
	}
	var out []Container
	for _, c := range list.Containers {
		if pid, ok := pids[c.ID]; ok {
			out = append(out, f.container(ns, c, pid))
		}
	}
	return out, nil
}

// container turns containerd's record of a container into a Container.
func (f containerdFollower) container(ns string, c *containersapi.Container, pid uint32) Container {
	out := newContainer(Containerd, ns, c.ID, "", c.Image, c.Labels)
	f.r.fs.fill(&out, pid, SpecCgroupPath(specCgroupsPath(c.Spec)))
	return out
}

// specCgroupsPath reads linux.cgroupsPath from an OCI spec, which containerd
// stores as JSON.
func specCgroupsPath(spec *anypb.Any) string {
	if spec == nil {
		return ""
	}
	var s struct {
		Linux *struct {
			CgroupsPath string `json:"cgroupsPath"`
		} `json:"linux"`
	}
	if json.Unmarshal(spec.GetValue(), &s) != nil || s.Linux == nil {
		return ""
	}
	return s.Linux.CgroupsPath
}

func (f containerdFollower) handle(ctx context.Context, ns, topic string, ev *anypb.Any) {
	if ev == nil {
		return
	}
	msg, err := anypb.UnmarshalNew(ev, proto.UnmarshalOptions{})
	if err != nil {
		return // a topic this agent has no use for, from a newer containerd
	}
	switch e := msg.(type) {
	case *apievents.NamespaceCreate:
		f.r.store.addNamespaces(e.Name)
	case *apievents.TaskStart:
		f.start(ctx, ns, e.ContainerID, e.Pid)
	case *apievents.ContainerUpdate:
		// Labels may have changed; the task, if any, is the same.
		if c, ok := f.r.store.snapshot().byID[ns+"/"+e.ID]; ok && c.Runtime == Containerd {
			f.start(ctx, ns, e.ID, c.HostPID)
		}
	case *apievents.ContainerDelete:
		f.r.store.remove(Containerd, ns+"/"+e.ID)
	}
	// TaskExit is not acted on: the container stays attributed until it is
	// deleted, as its last events may still be in the pipeline.
	_ = topic
}

func (f containerdFollower) start(ctx context.Context, ns, id string, pid uint32) {
	f.r.store.addNamespaces(ns)
	cctx, cancel := context.WithTimeout(inNamespace(ctx, ns), callTimeout)
	defer cancel()
	res, err := f.containers.Get(cctx, &containersapi.GetContainerRequest{ID: id})
	if err != nil {
		f.r.log.Debug("containerd get container failed", "namespace", ns, "id", id, "err", err)
		return
	}
	f.r.store.put(Containerd, f.container(ns, res.Container, pid))
}
