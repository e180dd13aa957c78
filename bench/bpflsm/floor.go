package main

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// attachFloor attaches a floor program (c/floor.bpf.c) to each of the
// enforcer's hooks: empty ones, or with dpath the exec and open hooks
// resolving the file's path. detach undoes it.
func attachFloor(dpath bool) (detach func() error, err error) {
	var objs floorBPFObjects
	if err := loadFloorBPFObjects(&objs, nil); err != nil {
		return nil, fmt.Errorf("floor programs: %w", loadErr(err))
	}
	p := objs.floorBPFPrograms
	exec, open := p.EmptyExec, p.EmptyOpen
	if dpath {
		exec, open = p.DpathExec, p.DpathOpen
	}
	var links []link.Link
	detach = func() error {
		var errs []error
		for _, l := range links {
			errs = append(errs, l.Close())
		}
		errs = append(errs, objs.Close())
		return errors.Join(errs...)
	}
	for _, prog := range []*ebpf.Program{exec, p.EmptyCommitted, open, p.EmptySocket, p.EmptyConnect,
		p.EmptyBind, p.EmptyAccept, p.EmptyCapable, p.EmptySetuid, p.EmptySetgid} {
		l, err := link.AttachLSM(link.LSMOptions{Program: prog})
		if err != nil {
			_ = detach()
			return nil, fmt.Errorf("attach floor program %v: %w", prog, err)
		}
		links = append(links, l)
	}
	return detach, nil
}
