package runtimes

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// callTimeout bounds one runtime API call (inspect, list), so a hung
// daemon turns into a reconnect instead of a stuck follower.
const callTimeout = 10 * time.Second

// dockerSession lists dockerd's running containers and follows its
// container events until the stream breaks or ctx ends.
func (r *Resolver) dockerSession(ctx context.Context, sock string, connected func(version string)) error {
	cli, err := client.NewClientWithOpts(client.WithHost("unix://"+sock), client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client for %s: %w", sock, err)
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	info, err := cli.Info(cctx) // negotiates the API version first
	cancel()
	if err != nil {
		return fmt.Errorf("docker info: %w", err)
	}
	d := dockerFollower{r: r, cli: cli, driver: info.CgroupDriver}

	// Subscribe before listing: a container started in between is then
	// reported by the stream rather than missed.
	ectx, stop := context.WithCancel(ctx)
	defer stop()
	msgs, errs := cli.Events(ectx, events.ListOptions{Filters: filters.NewArgs(filters.Arg("type", string(events.ContainerEventType)))})

	cctx, cancel = context.WithTimeout(ctx, callTimeout)
	list, err := cli.ContainerList(cctx, container.ListOptions{})
	cancel()
	if err != nil {
		return fmt.Errorf("docker list containers: %w", err)
	}
	cs := make([]Container, 0, len(list))
	for _, s := range list {
		if c, ok, err := d.inspect(ctx, s.ID); err != nil {
			r.log.Debug("docker inspect failed", "id", s.ID, "err", err)
		} else if ok {
			cs = append(cs, c)
		}
	}
	r.store.replace(Docker, cs)
	r.store.setLive(Docker, true)
	connected(fmt.Sprintf("%s (API %s, cgroup driver %s)", info.ServerVersion, cli.ClientVersion(), info.CgroupDriver))

	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			if err == nil {
				err = errors.New("event stream closed")
			}
			return fmt.Errorf("docker events: %w", err)
		case m := <-msgs:
			d.handle(ctx, m)
		}
	}
}

type dockerFollower struct {
	r      *Resolver
	cli    *client.Client
	driver string
}

func (d dockerFollower) handle(ctx context.Context, m events.Message) {
	id := m.Actor.ID
	switch m.Action {
	case events.ActionStart, events.ActionRestart, events.ActionRename, events.ActionUpdate:
		// Restart gives the container a new cgroup; rename a new name.
		c, ok, err := d.inspect(ctx, id)
		if err != nil {
			d.r.log.Debug("docker inspect failed", "id", id, "action", m.Action, "err", err)
			return
		}
		if ok {
			d.r.store.put(Docker, c)
		}
	case events.ActionDestroy:
		// Kept until removal, not just until it dies: the pipeline may still
		// hold its last events, and a dead container's cgroup id is never
		// reused.
		d.r.store.remove(Docker, id)
	}
}

// inspect turns a running container into a Container; ok is false for a
// container that is not running (nothing of it can raise events).
func (d dockerFollower) inspect(ctx context.Context, id string) (Container, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	j, err := d.cli.ContainerInspect(ctx, id)
	if err != nil {
		return Container{}, false, err
	}
	if j.State == nil || !j.State.Running || j.State.Pid <= 0 {
		return Container{}, false, nil
	}
	var image string
	var labels map[string]string
	if j.Config != nil {
		image, labels = j.Config.Image, j.Config.Labels
	}
	c := newContainer(Docker, "", j.ID, strings.TrimPrefix(j.Name, "/"), image, labels)
	parent := ""
	if j.HostConfig != nil {
		parent = j.HostConfig.CgroupParent
	}
	d.r.fs.fill(&c, uint32(j.State.Pid), DockerCgroupPath(d.driver, parent, j.ID))
	return c, true, nil
}
