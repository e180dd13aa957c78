package agent

import (
	"log/slog"

	"github.com/armorhost/kubearmor/agent/config"
	"github.com/armorhost/kubearmor/enforce/apparmor"
	"github.com/armorhost/kubearmor/enforce/bpflsm"
	"github.com/armorhost/kubearmor/enforce/fanotify"
)

// The enforcers built into this agent, by the lsm config name: "bpf"
// (enforce/bpflsm), and the fallback tiers for kernels without BPF-LSM,
// "apparmor" and "fanotify" (enforce/apparmor, enforce/fanotify).
func init() {
	enforcers["bpf"] = func(cfg *config.Config, life Lifecycle, log *slog.Logger) (Enforcer, error) {
		if err := bpflsm.Supported(); err != nil {
			return nil, err
		}
		return bpflsm.New(bpflsm.Options{PinRoot: life.PinRoot, ObjectVersion: life.ObjectVersion, Log: log})
	}
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

// openEnforcer builds one enforcer, or says why this host cannot run it.
type openEnforcer func(cfg *config.Config, life Lifecycle, log *slog.Logger) (Enforcer, error)

// enforcers are the enforcers built into this agent, by lsm config name.
var enforcers = map[string]openEnforcer{}
