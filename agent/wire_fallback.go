package agent

import (
	"log/slog"

	"github.com/armorhost/kubearmor/agent/config"
	"github.com/armorhost/kubearmor/enforce/apparmor"
	"github.com/armorhost/kubearmor/enforce/fanotify"
)

// The fallback tiers, for kernels without BPF-LSM (see enforce/apparmor and
// enforce/fanotify): the lsm config names "apparmor" and "fanotify".
func init() {
	enforcers["apparmor"] = func(cfg *config.Config, life Lifecycle, log *slog.Logger) (Enforcer, error) {
		if err := apparmor.Supported(); err != nil {
			return nil, err
		}
		e, err := apparmor.New(apparmor.Options{Log: log, Version: life.AgentVersion})
		if err != nil {
			return nil, err
		}
		return e, nil
	}
	enforcers["fanotify"] = func(cfg *config.Config, _ Lifecycle, log *slog.Logger) (Enforcer, error) {
		if err := fanotify.Supported(); err != nil {
			return nil, err
		}
		e, err := fanotify.New(fanotify.Options{Log: log})
		if err != nil {
			return nil, err
		}
		return e, nil
	}
}
