// Command containers-up starts the test lab's containerd and dockerd (state
// and sockets in a temporary directory), prints how to reach them, and on
// SIGINT/SIGTERM removes every container, stops both daemons and restores
// the host. For trying the agent against real containers by hand.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/armorhost/kubearmor/runtimes/runtimetest"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	l, err := runtimetest.Start(ctx)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "containers-up:", err)
		os.Exit(1)
	}
	if _, err := l.DockerRun(context.Background(), "kabox-demo", map[string]string{"demo": "1"}, "/bin/sleep", "100000"); err != nil {
		fmt.Fprintln(os.Stderr, "containers-up: docker run:", err)
	}
	if _, err := l.CtrRun(context.Background(), "default", "kabox-demo-c", map[string]string{"demo": "1"}, "/bin/sleep", "100000"); err != nil {
		fmt.Fprintln(os.Stderr, "containers-up: ctr run:", err)
	}
	fmt.Printf("containerd: %s\ndockerd:    %s\nimages:     %s (docker), %s (containerd)\n", l.ContainerdSock, l.DockerSock, runtimetest.DockerImage, runtimetest.ContainerdImage)
	fmt.Printf("try:        docker -H unix://%s ps; ctr --address %s -n default task ls\n", l.DockerSock, l.ContainerdSock)
	fmt.Printf("agent:      runtimes.Options{DockerSocket: %q, ContainerdSocket: %q}\n", l.DockerSock, l.ContainerdSock)
	fmt.Println("Ctrl-C stops everything and restores the host.")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	if err := l.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "containers-up: cleanup:", err)
		os.Exit(1)
	}
}
