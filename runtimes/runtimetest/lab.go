// Package runtimetest starts real container runtimes for tests: Debian's
// containerd, runc and docker.io, run by hand with all their state and
// sockets in a temporary directory, plus a busybox image built locally (no
// registry is needed). Everything started is stopped by PID, and what
// dockerd leaves on the host (bridge, iptables chains, FORWARD policy,
// ip_forward, /run/docker, /run/containerd, /etc/docker/key.json) is
// restored to how it was.
package runtimetest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Image names the lab builds.
const (
	DockerImage     = "kabox:1"
	ContainerdImage = "docker.io/library/kabox:latest"
)

// Lab is a running containerd and dockerd.
type Lab struct {
	Dir            string
	ContainerdSock string
	DockerSock     string

	containerd, dockerd *exec.Cmd
	before              hostState
	imported            map[string]bool // containerd namespaces holding the image
	rootfsTar           string
}

// ErrUnavailable is returned (wrapped) when the lab cannot run here; tests should skip.
var ErrUnavailable = errors.New("container runtimes unavailable")

// Start installs the packages if needed and starts both daemons. Call
// Close when done, whatever happens.
func Start(ctx context.Context) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: needs root", ErrUnavailable)
	}
	if err := install(ctx); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	dir, err := os.MkdirTemp("", "kubearmor-rtlab-")
	if err != nil {
		return nil, err
	}
	l := &Lab{
		Dir:            dir,
		ContainerdSock: filepath.Join(dir, "containerd/containerd.sock"),
		DockerSock:     filepath.Join(dir, "docker/docker.sock"),
		before:         captureHost(),
		imported:       map[string]bool{},
	}
	if err := l.start(ctx); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func install(ctx context.Context) error {
	need := false
	for _, b := range []string{"containerd", "ctr", "runc", "dockerd", "busybox"} {
		if _, err := exec.LookPath(b); err != nil {
			need = true
		}
	}
	if !need {
		return nil
	}
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", "--no-install-recommends", "containerd", "runc", "docker.io", "busybox-static")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install containerd runc docker.io: %v\n%s", err, tail(out))
	}
	return nil
}

func (l *Lab) start(ctx context.Context) error {
	cdir := filepath.Join(l.Dir, "containerd")
	ddir := filepath.Join(l.Dir, "docker")
	for _, d := range []string{cdir, ddir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// CRI is off: it would set up CNI and a sandbox image we do not need.
	conf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
`, filepath.Join(cdir, "root"), filepath.Join(cdir, "state"), l.ContainerdSock)
	confPath := filepath.Join(cdir, "config.toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return err
	}
	var err error
	if l.containerd, err = daemon(filepath.Join(cdir, "containerd.log"), "containerd", "--config", confPath); err != nil {
		return err
	}
	if err := waitSocket(ctx, l.ContainerdSock, l.containerd); err != nil {
		return fmt.Errorf("containerd: %w\n%s", err, l.logTail("containerd/containerd.log"))
	}
	return l.StartDocker(ctx)
}

// StartDocker starts dockerd (again, after StopDocker). Networking is off
// (no bridge, no iptables, no ip_forward) so the host keeps its own; the
// tests need container identity, not container networks.
func (l *Lab) StartDocker(ctx context.Context) error {
	ddir := filepath.Join(l.Dir, "docker")
	var err error
	l.dockerd, err = daemon(filepath.Join(ddir, "dockerd.log"), "dockerd",
		"--data-root", filepath.Join(ddir, "root"), "--exec-root", filepath.Join(ddir, "exec"),
		"-H", "unix://"+l.DockerSock, "--pidfile", filepath.Join(ddir, "docker.pid"),
		"--containerd", l.ContainerdSock,
		"--bridge", "none", "--iptables=false", "--ip-forward=false", "--ip-masq=false")
	if err != nil {
		return err
	}
	if err := waitSocket(ctx, l.DockerSock, l.dockerd); err != nil {
		return fmt.Errorf("dockerd: %w\n%s", err, l.logTail("docker/dockerd.log"))
	}
	// The socket exists a little before the API answers.
	for {
		if _, err := l.Docker(ctx, "version"); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dockerd did not answer: %w\n%s", ctx.Err(), l.logTail("docker/dockerd.log"))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// StopDocker stops dockerd by PID; its containers stop with it.
func (l *Lab) StopDocker() {
	stop(l.dockerd)
	l.dockerd = nil
}

func daemon(logPath, name string, args ...string) (*exec.Cmd, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group, so a test's ^C does not reach the daemons before
	// Close stops them in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { cmd.Wait(); logf.Close() }()
	return cmd, nil
}

func waitSocket(ctx context.Context, path string, cmd *exec.Cmd) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		if st, err := os.Stat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
			return nil
		}
		if cmd.ProcessState != nil {
			return fmt.Errorf("exited: %s", cmd.ProcessState)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no socket %s: %w", path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop ends a daemon by PID: SIGTERM, then SIGKILL if it lingers.
func stop(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	for range 200 { // up to 20 s
		if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Kill()
}

// Docker runs the docker CLI against the lab's dockerd.
func (l *Lab) Docker(ctx context.Context, args ...string) (string, error) {
	return run(ctx, "docker", append([]string{"-H", "unix://" + l.DockerSock}, args...)...)
}

// Ctr runs ctr against the lab's containerd in namespace ns.
func (l *Lab) Ctr(ctx context.Context, ns string, args ...string) (string, error) {
	return run(ctx, "ctr", append([]string{"--address", l.ContainerdSock, "--namespace", ns}, args...)...)
}

func run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, tail(out))
	}
	return strings.TrimSpace(string(out)), nil
}

// DockerRun starts a detached docker container from the lab image and
// returns its full id.
func (l *Lab) DockerRun(ctx context.Context, name string, labels map[string]string, cmd ...string) (string, error) {
	if err := l.dockerImage(ctx); err != nil {
		return "", err
	}
	args := []string{"run", "-d", "--network", "none", "--name", name}
	for k, v := range labels {
		args = append(args, "--label", k+"="+v)
	}
	args = append(append(args, DockerImage), cmd...)
	return l.Docker(ctx, args...)
}

// CtrRun starts a detached containerd container in namespace ns from the
// lab image and returns the host pid of its init process.
func (l *Lab) CtrRun(ctx context.Context, ns, id string, labels map[string]string, cmd ...string) (int, error) {
	if err := l.containerdImage(ctx, ns); err != nil {
		return 0, err
	}
	// runc keeps its own state apart from containerd's, by default in
	// /run/containerd/runc/NS/ID: a lab killed mid-test left that behind,
	// and the next lab's container of the same ID failed with "container
	// with given ID already exists". The lab's directory holds it instead.
	args := []string{"run", "-d", "--runc-root", filepath.Join(l.Dir, "runc")}
	for k, v := range labels {
		args = append(args, "--label", k+"="+v)
	}
	args = append(append(args, ContainerdImage, id), cmd...)
	if _, err := l.Ctr(ctx, ns, args...); err != nil {
		return 0, err
	}
	return l.CtrPid(ctx, ns, id)
}

// CtrPid is the host pid of a containerd task's init process.
func (l *Lab) CtrPid(ctx context.Context, ns, id string) (int, error) {
	out, err := l.Ctr(ctx, ns, "task", "ls")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == id {
			var pid int
			if _, err := fmt.Sscan(f[1], &pid); err == nil {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no task %s in %s:\n%s", id, ns, out)
}

// CtrRemove kills and deletes a containerd container.
func (l *Lab) CtrRemove(ctx context.Context, ns, id string) error {
	l.Ctr(ctx, ns, "task", "kill", "-s", "SIGKILL", id)
	for range 100 {
		if _, err := l.Ctr(ctx, ns, "task", "delete", id); err == nil || !l.hasTask(ctx, ns, id) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, err := l.Ctr(ctx, ns, "container", "delete", id)
	return err
}

func (l *Lab) hasTask(ctx context.Context, ns, id string) bool {
	_, err := l.CtrPid(ctx, ns, id)
	return err == nil
}

// rootfs builds the image's only layer: busybox-static and its applets.
func (l *Lab) rootfs() (string, error) {
	if l.rootfsTar != "" {
		return l.rootfsTar, nil
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "", fmt.Errorf("busybox-static: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin/", "dev/", "etc/", "proc/", "sys/", "tmp/", "root/"} {
		tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))})
	tw.Write(bb)
	for _, a := range []string{"sh", "sleep", "cat", "echo", "ls", "true"} {
		tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	p := filepath.Join(l.Dir, "rootfs.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		return "", err
	}
	l.rootfsTar = p
	return p, nil
}

func (l *Lab) dockerImage(ctx context.Context) error {
	if l.imported["docker"] {
		return nil
	}
	p, err := l.rootfs()
	if err != nil {
		return err
	}
	if _, err := l.Docker(ctx, "import", p, DockerImage); err != nil {
		return err
	}
	l.imported["docker"] = true
	return nil
}

// containerdImage imports an OCI layout made around the rootfs into ns.
func (l *Lab) containerdImage(ctx context.Context, ns string) error {
	if l.imported["containerd/"+ns] {
		return nil
	}
	p, err := l.rootfs()
	if err != nil {
		return err
	}
	layer, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	oci, err := ociLayout(layer, ContainerdImage)
	if err != nil {
		return err
	}
	op := filepath.Join(l.Dir, "image-oci.tar")
	if err := os.WriteFile(op, oci, 0o600); err != nil {
		return err
	}
	if _, err := l.Ctr(ctx, ns, "images", "import", op); err != nil {
		return err
	}
	l.imported["containerd/"+ns] = true
	return nil
}

// ociLayout is an OCI image layout tarball holding one uncompressed layer.
func ociLayout(layer []byte, name string) ([]byte, error) {
	type desc struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int               `json:"size"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	digest := func(b []byte) string { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }
	blobs := map[string][]byte{}
	add := func(mt string, b []byte) desc {
		d := desc{MediaType: mt, Digest: digest(b), Size: len(b)}
		blobs["blobs/sha256/"+strings.TrimPrefix(d.Digest, "sha256:")] = b
		return d
	}
	layerDesc := add("application/vnd.oci.image.layer.v1.tar", layer)
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Cmd": []string{"/bin/sh"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDesc.Digest}},
	})
	configDesc := add("application/vnd.oci.image.config.v1+json", config)
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": configDesc, "layers": []desc{layerDesc},
	})
	manifestDesc := add("application/vnd.oci.image.manifest.v1+json", manifest)
	manifestDesc.Annotations = map[string]string{"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest"}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []desc{manifestDesc}})

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	put := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))})
		tw.Write(b)
	}
	put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	put("index.json", index)
	for n, b := range blobs {
		put(n, b)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Close removes every container, stops both daemons by PID, restores the
// host, and removes the state directory.
func (l *Lab) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if l.dockerd != nil {
		if ids, err := l.Docker(ctx, "ps", "-aq"); err == nil && ids != "" {
			l.Docker(ctx, append([]string{"rm", "-f"}, strings.Fields(ids)...)...)
		}
	}
	if l.containerd != nil {
		if nss, err := l.Ctr(ctx, "default", "namespaces", "ls", "-q"); err == nil {
			for _, ns := range strings.Fields(nss) {
				if ns == "moby" {
					continue // dockerd's own; gone with its containers
				}
				if ids, err := l.Ctr(ctx, ns, "containers", "ls", "-q"); err == nil {
					for _, id := range strings.Fields(ids) {
						l.CtrRemove(ctx, ns, id)
					}
				}
			}
		}
	}
	stop(l.dockerd)
	stop(l.containerd)
	// runc's shims outlive containerd by design; they exit once their
	// container is gone, which the removals above made sure of. Kill any
	// left over from a container that could not be removed.
	killShims(l.Dir)
	var errs []error
	errs = append(errs, l.before.restore()...)
	// Mounts of the state dir (overlay rootfs, shm) must go before it can.
	unmountUnder(l.Dir)
	if err := os.RemoveAll(l.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (l *Lab) logTail(rel string) string {
	b, _ := os.ReadFile(filepath.Join(l.Dir, rel))
	return tail(b)
}

func tail(b []byte) string {
	const n = 2000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
