package agent

import (
	"os"
	"strings"

	"github.com/armorhost/kubearmor/agent/config"
	"github.com/armorhost/kubearmor/feeder"
	"github.com/armorhost/kubearmor/kernelfs"
)

// writeProbeData writes the host description `karmor probe` reads.
func (a *Agent) writeProbeData(cfg *config.Config) {
	lsm := "none"
	if a.enforcer != nil {
		lsm = a.enforcer.Name()
	}
	err := feeder.WriteKarmorProbeData(feeder.KarmorProbeDataPath, feeder.KarmorProbeData{
		OSImage:       osImage(),
		KernelVersion: kernelfs.Release(),
		ActiveLSM:     lsm,
		HostSecurity:  true,
		HostDefaultPosture: feeder.Posture{File: cfg.HostDefaultFilePosture, Network: cfg.HostDefaultNetworkPosture,
			Capabilities: cfg.HostDefaultCapabilitiesPosture},
		HostVisibility: cfg.HostVisibility,
	})
	if err != nil {
		a.log.Warn("cannot write karmor probe data", "path", feeder.KarmorProbeDataPath, "err", err)
	}
}

// osImage is PRETTY_NAME of /etc/os-release.
func osImage() string {
	data, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "Linux"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}
