package feeder

import (
	"context"
	"fmt"
	"strconv"
	"testing"
)

// A client that stops reading loses only its own alerts: the healthy
// client receives every alert in order, the publisher never blocks, and the
// stalled client, once it reads again, accounts for every alert exactly:
// received + reported dropped == published, with the server's counters
// agreeing.
func TestStalledGRPCSubscriber(t *testing.T) {
	const depth, total = 64, 5000
	a := startAgent(t, func(o *Options) { o.QueueDepth = depth })
	ctx := context.Background()
	healthy := karmorLogs(t, ctx, dial(t, a.tcp), "policy", false)
	stalled := karmorLogs(t, ctx, dial(t, "unix://"+a.socket), "policy", false)
	waitUntil(func() bool { return a.srv.alerts.Len() == 2 })

	for i := range total {
		al := sampleAlert("p")
		al.HostPID = int32(i)
		a.srv.PublishAlert(al) // must return even though one reader is stuck
		got, err := healthy.alerts.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got.HostPID != int32(i) || got.Type == TypeSystemEvent {
			t.Fatalf("healthy client: alert %d is %v", i, got)
		}
	}
	fs := a.srv.FeederStatus()
	if fs.AlertsPublished != total || fs.AlertsDropped == 0 {
		t.Fatalf("published %d dropped %d: the stalled client never filled its queue", fs.AlertsPublished, fs.AlertsDropped)
	}

	var received, reported uint64
	last := int32(-1)
	for received+reported < total {
		got, err := stalled.alerts.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if got.Type == TypeSystemEvent {
			if got.Operation != OperationAlertsDropped {
				t.Fatalf("unexpected notice %v", got)
			}
			n, err := strconv.ParseUint(got.EventData["Dropped"], 10, 64)
			if err != nil || got.Data != fmt.Sprintf("dropped=%d", n) {
				t.Fatalf("bad drop notice %v", got)
			}
			reported += n
			continue
		}
		if got.HostPID <= last {
			t.Fatalf("stalled client: alerts out of order: %d after %d", got.HostPID, last)
		}
		last = got.HostPID
		received++
	}
	if received+reported != total {
		t.Fatalf("stalled client: received %d + reported dropped %d != %d", received, reported, total)
	}
	if reported != fs.AlertsDropped {
		t.Errorf("reported %d drops, server counted %d", reported, fs.AlertsDropped)
	}
	t.Logf("stalled client: %d received (queue %d + transport buffers), %d dropped and reported", received, depth, reported)
}
