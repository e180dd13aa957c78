package monitor

import (
	"path/filepath"
	"testing"
)

// The monitor's stages account for every record: what the kernel produced
// was read or counted as lost, and what was read was emitted, counted as
// dropped, or carried no event.
func TestStagesAccount(t *testing.T) {
	m, c := sharedMonitor(t)
	helper(t, "open-rw", filepath.Join(t.TempDir(), "counted"))
	settle(t, c)
	st := m.Stages()
	if len(st) != 2 || st[0].Name != "monitor kernel" || st[1].Name != "monitor reader" {
		t.Fatalf("stages: %+v", st)
	}
	kernel, reader := st[0], st[1]
	if kernel.Received != kernel.Passed+kernel.Dropped || kernel.Passed == 0 {
		t.Errorf("kernel: %+v", kernel)
	}
	if reader.Received != kernel.Passed || reader.Received != reader.Passed+reader.Dropped+reader.Filtered || reader.Passed == 0 {
		t.Errorf("reader: %+v (kernel passed %d)", reader, kernel.Passed)
	}
	if s := m.Stats(); reader.Passed != s.Emitted {
		t.Errorf("reader passed %d, emitted %d", reader.Passed, s.Emitted)
	}
}
