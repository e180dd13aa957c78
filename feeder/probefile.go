package feeder

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// KarmorProbeDataPath is where `karmor probe` reads the host description in
// systemd mode (a fixed path in karmor).
const KarmorProbeDataPath = "/tmp/karmorProbeData.cfg"

// Posture is a default posture per resource: "audit" or "block".
type Posture struct {
	File         string `json:"file,omitempty"`
	Network      string `json:"network,omitempty"`
	Capabilities string `json:"capabilities,omitempty"`
	Device       string `json:"device,omitempty"`
}

// KarmorProbeData is the JSON object `karmor probe` expects in
// KarmorProbeDataPath (karmor-client.md §6): key names and value types as
// karmor decodes them.
type KarmorProbeData struct {
	OSImage                 string
	KernelVersion           string
	KubeletVersion          string
	ContainerRuntime        string
	ActiveLSM               string
	KernelHeaderPresent     bool
	HostSecurity            bool
	ContainerSecurity       bool
	ContainerDefaultPosture Posture
	HostDefaultPosture      Posture
	HostVisibility          string
}

// WriteKarmorProbeData writes d to path with mode 0600, atomically, so a
// concurrent `karmor probe` never reads half a file.
func WriteKarmorProbeData(path string, d KarmorProbeData) error {
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("feeder: probe data: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".karmorProbeData.*.tmp")
	if err != nil {
		return fmt.Errorf("feeder: probe data: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("feeder: probe data: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("feeder: probe data: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("feeder: probe data: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("feeder: probe data: %w", err)
	}
	return nil
}
