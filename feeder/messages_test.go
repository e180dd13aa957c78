package feeder

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

func TestLogHandlerPublishesMessages(t *testing.T) {
	srv, _ := New(Options{Cluster: "c", Host: "vm1", HostIP: "10.0.0.1"})
	sub, _ := srv.messages.Subscribe("test", 10)
	var text bytes.Buffer
	log := slog.New(srv.LogHandler(slog.NewTextHandler(&text, &slog.HandlerOptions{Level: slog.LevelDebug}), slog.LevelInfo))
	log.Debug("not a message")
	log.With("component", "bpf").WithGroup("rule").Warn("cannot enforce", "id", 7, "reason", "no LSM")
	log.Error("failed", slog.Group("file", "name", "x.yaml"))

	ctx := context.Background()
	var got []string
	for range 2 {
		m, _, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type != "Message" || m.HostName != "vm1" || m.ClusterName != "c" || m.HostIP != "10.0.0.1" || m.UpdatedTime == "" {
			t.Errorf("message envelope %v", m)
		}
		got = append(got, m.Level+" "+m.Message)
	}
	want := []string{"WARN cannot enforce component=bpf rule.id=7 rule.reason=no LSM", "ERROR failed file.name=x.yaml"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
	if len(sub.C()) != 0 {
		t.Error("a debug record became a message")
	}
	if !strings.Contains(text.String(), "not a message") || !strings.Contains(text.String(), "cannot enforce") {
		t.Errorf("records were not passed on:\n%s", text.String())
	}
}
