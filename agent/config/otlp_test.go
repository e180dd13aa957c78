package config

import (
	"strings"
	"testing"
)

func TestOTLPKeys(t *testing.T) {
	c, err := Load(writeConfig(t, "otlpEndpoint: collector:4317\notlpHeaders: \"authorization=Bearer%20abc, x-tenant=7\"\notlpEvents: both\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.OTLPProtocol != "grpc" || c.OTLPInsecure || c.OTLPBatchSize != 512 || c.OTLPQueueLength != 8192 {
		t.Errorf("defaults: %+v", c)
	}
	h, _ := c.OTLPHeaderMap()
	if h["authorization"] != "Bearer abc" || h["x-tenant"] != "7" || len(h) != 2 {
		t.Errorf("headers: %v", h)
	}
	if a, l, _ := c.OTLPEventKinds(); !a || !l {
		t.Errorf("otlpEvents both: %v %v", a, l)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"otlpEndpoint: c:4317\notlpProtocol: http\n", `otlpProtocol: must be grpc or http/protobuf, not "http"`},
		{"otlpEndpoint: c:4317\notlpEvents: all\n", `otlpEvents: must be alerts, logs or both, not "all"`},
		{"otlpEndpoint: c:4317\notlpHeaders: token\n", "otlpHeaders: entry 1 is not key=value"},
		{"otlpEndpoint: c:4317\notlpHeaders: a=%zz\n", "otlpHeaders: entry 1 (a): bad URL encoding"},
		{"otlpEndpoint: c:4317\notlpClientCert: /c.pem\n", "otlpClientCert and otlpClientKey go together"},
		{"otlpEndpoint: c:4317\notlpInsecure: true\notlpCACert: /ca.pem\n", "otlpInsecure: plaintext, yet"},
		{"otlpEndpoint: c:4317\notlpBatchSize: 0\n", "otlpBatchSize: must be between 1 and 65536"},
		{"otlpEndpoint: c:4317\notlpQueueLength: -1\n", "otlpQueueLength: must be at least 1"},
		{"otlpEndpoint: c:4317\notlpInsecure: yes please\n", "otlpInsecure: expected true or false"},
	} {
		c, err := Load(writeConfig(t, tc.yaml), true)
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
	// Without an endpoint the other keys are not checked: OTLP is off.
	c, _ = Load(writeConfig(t, "otlpProtocol: bogus\n"), true)
	if err := c.Validate(); err != nil {
		t.Errorf("OTLP off: %v", err)
	}
}
