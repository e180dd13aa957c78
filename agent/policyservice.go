package agent

import (
	"errors"

	"github.com/armorhost/kubearmor/feeder"
	"github.com/armorhost/kubearmor/hostpolicy"
	"github.com/armorhost/kubearmor/policystore"
)

// PolicyService and ProbeService: the feeder's calls into the agent's policy store.

// applyHostPolicy carries out a PolicyService request through the store.
func (a *Agent) applyHostPolicy(ev *hostpolicy.Event) (feeder.Status, error) {
	a.mu.Lock()
	store := a.store
	a.mu.Unlock()
	if store == nil {
		return feeder.StatusFailure, errors.New("policies are still loading")
	}
	res, err := store.Apply(ev)
	if errors.Is(err, policystore.ErrRejected) {
		return feeder.StatusInvalid, err
	}
	if err != nil {
		return feeder.StatusFailure, err
	}
	st, _ := feeder.StatusFromName(res.String())
	return st, nil
}

// Policies lists the policies in force (ProbeService).
func (a *Agent) Policies() []*hostpolicy.Policy {
	a.mu.Lock()
	store := a.store
	a.mu.Unlock()
	if store == nil {
		return nil
	}
	return store.Policies()
}
