package monitor_test

import (
	"github.com/armorhost/kubearmor/agent"
	"github.com/armorhost/kubearmor/bpf/monitor"
)

// The agent consumes the monitor through this interface.
var _ agent.Monitor = (*monitor.Monitor)(nil)
