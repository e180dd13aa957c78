package config

import (
	"strings"
	"testing"
	"time"
)

// The gRPC access keys: defaults, values from the file, and refusals that
// name the key.
func TestAccessKeys(t *testing.T) {
	d := Defaults()
	if st, err := d.StallTimeout(); err != nil || st != 30*time.Second || d.TelemetryGroup != "kubearmor" ||
		d.MaxConnections != 0 || d.MaxConnectionsPerUser != 32 || d.MaxStreamsPerUser != 8 {
		t.Fatalf("defaults: %+v (stall %v %v)", d, st, err)
	}
	c, err := Load(writeConfig(t, "telemetryGroup: \"*\"\nmaxConnections: 100\nmaxStreamsPerUser: 2\nsubscriberStallTimeout: 2m\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := c.StallTimeout(); c.TelemetryGroup != "*" || c.MaxConnections != 100 || c.MaxStreamsPerUser != 2 || st != 2*time.Minute {
		t.Fatalf("from the file: %+v", c)
	}
	for _, tc := range []struct{ text, want string }{
		{"subscriberStallTimeout: soon\n", "subscriberStallTimeout: \"soon\" is not a duration"},
		{"subscriberStallTimeout: 10ms\n", "subscriberStallTimeout: 10ms is below the minimum"},
		{"maxStreamsPerUser: 0\n", "maxStreamsPerUser: must be at least 1"},
		{"maxConnectionsPerUser: -1\n", "maxConnectionsPerUser: must be at least 1"},
		{"maxConnections: -5\n", "maxConnections: must be 0"},
	} {
		c, err := Load(writeConfig(t, tc.text), true)
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.text, err, tc.want)
		}
	}
}
