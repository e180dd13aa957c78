package main

import (
	"os"
	"strings"
	"testing"
)

// The record floor loads on this kernel by whichever path it takes (the
// development kernel refuses fexit, so the tracepoints) and its reader
// drains the records of real opens; detach fails when none arrived.
func TestRecordFloorRecordsOpens(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading BPF needs root")
	}
	detach, via, err := attachRecordFloor()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("record floor via %s", via)
	if !strings.HasPrefix(via, "fexit") && !strings.HasPrefix(via, "tracepoints (fexit: ") {
		t.Errorf("via = %q: neither fexit nor tracepoints with fexit's refusal", via)
	}
	path := t.TempDir() + "/f"
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if err := detach(); err != nil {
		t.Fatal(err)
	}
}
