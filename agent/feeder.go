package agent

import (
	"net"

	"github.com/armorhost/kubearmor/agent/config"
	"github.com/armorhost/kubearmor/feeder"
	"github.com/armorhost/kubearmor/feeder/throttle"
)

// The feeder: the gRPC server the agent serves alerts, logs and status on.

func throttleConfig(cfg *config.Config) throttle.Config {
	return throttle.Config{Enabled: cfg.AlertThrottling, MaxPerSec: cfg.MaxAlertPerSec, Sec: cfg.ThrottleSec}
}

func (a *Agent) newFeeder(cfg *config.Config) (*feeder.Server, error) {
	addr, _ := cfg.GRPCAddress()   // validated already
	stall, _ := cfg.StallTimeout() // validated already
	var tls *feeder.TLSFiles
	if cfg.TLSEnabled {
		tls = feeder.TLSFilesIn(cfg.TLSCertPath)
	}
	return feeder.New(feeder.Options{
		Cluster:  cfg.Cluster,
		Host:     cfg.Host,
		HostIP:   hostIP(),
		TCP:      addr,
		Socket:   cfg.Socket,
		TLS:      tls,
		Throttle: throttleConfig(cfg),

		TelemetryGroup:         cfg.TelemetryGroup,
		MaxConnections:         cfg.MaxConnections,
		MaxConnectionsPerUser:  cfg.MaxConnectionsPerUser,
		MaxStreamsPerUser:      cfg.MaxStreamsPerUser,
		SubscriberStallTimeout: stall,

		Policies: feeder.PolicyApplierFunc(a.applyHostPolicy),
		Probe:    a,
		Status:   a.statusProto,
		Stages:   a.stages,
		Log:      a.log,
	})
}

func hostIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	return ""
}
