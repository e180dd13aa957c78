package feeder

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteKarmorProbeData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "karmorProbeData.cfg")
	d := KarmorProbeData{OSImage: "Debian GNU/Linux 12 (bookworm)", KernelVersion: "6.1.0-18-amd64", ActiveLSM: "BPFLSM",
		HostSecurity: true, HostDefaultPosture: Posture{File: "audit", Network: "audit", Capabilities: "audit", Device: "audit"},
		ContainerDefaultPosture: Posture{File: "audit", Network: "audit", Capabilities: "audit"}, HostVisibility: "process,file,network,capabilities"}
	if err := WriteKarmorProbeData(path, d); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"OSImage":"Debian GNU/Linux 12 (bookworm)","KernelVersion":"6.1.0-18-amd64","KubeletVersion":"","ContainerRuntime":"","ActiveLSM":"BPFLSM","KernelHeaderPresent":false,"HostSecurity":true,"ContainerSecurity":false,"ContainerDefaultPosture":{"file":"audit","network":"audit","capabilities":"audit"},"HostDefaultPosture":{"file":"audit","network":"audit","capabilities":"audit","device":"audit"},"HostVisibility":"process,file,network,capabilities"}`
	if string(data) != want {
		t.Errorf("got  %s\nwant %s", data, want)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}
