package feeder

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
	"github.com/armorhost/kubearmor/feeder/peer"
	"github.com/armorhost/kubearmor/feeder/policypb"
	"github.com/armorhost/kubearmor/feeder/statuspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// TLSFiles name the PEM files of the TCP listener's TLS. With CA set,
// clients must present a certificate signed by it (mutual TLS).
type TLSFiles struct {
	Cert, Key string
	CA        string // "" = server-side TLS only; PolicyService is then refused off loopback
}

// TLSFilesIn returns the conventional file names in dir: server.crt,
// server.key and ca.crt.
func TLSFilesIn(dir string) *TLSFiles {
	return &TLSFiles{Cert: filepath.Join(dir, "server.crt"), Key: filepath.Join(dir, "server.key"), CA: filepath.Join(dir, "ca.crt")}
}

// IsLoopback reports whether a host:port names only the loopback interface.
// An empty host (":32767") means every interface, which is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkTCP(addr string, files *TLSFiles) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("feeder: gRPC address %q: %w", addr, err)
	}
	if !IsLoopback(addr) && files == nil {
		return fmt.Errorf("feeder: refusing to serve gRPC on %s without TLS: only loopback addresses may be plaintext", addr)
	}
	return nil
}

type listener struct {
	name     string
	network  string
	ln       net.Listener
	srv      *grpc.Server
	health   *health.Server
	tls      bool
	policyOK bool
	cleanup  func() // after the server stopped
}

func (s *Server) listenTCP() (*listener, error) {
	l := &listener{name: s.opts.TCP, network: "tcp", policyOK: IsLoopback(s.opts.TCP)}
	var creds credentials.TransportCredentials
	if s.opts.TLS != nil {
		conf, err := loadTLS(s.opts.TLS)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(conf)
		l.tls = true
		l.policyOK = l.policyOK || conf.ClientAuth == tls.RequireAndVerifyClientCert
	}
	ln, err := net.Listen("tcp", s.opts.TCP)
	if err != nil {
		return nil, fmt.Errorf("feeder: listen on %s: %w", s.opts.TCP, err)
	}
	l.ln = &limitListener{Listener: ln, a: s.access}
	l.name = ln.Addr().String()
	if IsLoopback(s.opts.TCP) {
		if err := peer.ProbeTCP(); err != nil {
			// Not fatal: the unix socket still serves root, and TCP peers
			// are then all unprivileged (fail closed). But say so, since
			// root's karmor at its default localhost:32767 is refused.
			s.access.noSockDiag = err.Error()
			s.log.Warn("loopback TCP clients cannot be identified: every TCP peer is treated as unprivileged; root's karmor must use --gRPC unix://"+s.opts.Socket, "err", err)
		}
	}
	s.newGRPC(l, peer.Credentials(creds, peer.ViaTCP, s.access.admit))
	return l, nil
}

func loadTLS(f *TLSFiles) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("feeder: TLS certificate: %w", err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("feeder: TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("feeder: TLS CA %s: no PEM certificate found", f.CA)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return conf, nil
}

// listenUnix creates the socket with mode 0660, in telemetryGroup when
// that group exists. A missing parent directory
// is created with mode 0750; an existing one is left as it is. The socket is
// bound in a private (0700) directory, given its mode, and only then renamed
// into place, so no other user can connect in between, whatever the
// parent directory allows.
func (s *Server) listenUnix() (*listener, error) {
	path := s.opts.Socket
	dir := filepath.Dir(path)
	ours := dir == filepath.Dir(DefaultSocket)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("feeder: socket directory: %w", err)
		}
		if err := os.Chmod(dir, 0o750); err != nil { // MkdirAll's mode is subject to the umask
			return nil, fmt.Errorf("feeder: socket directory: %w", err)
		}
		ours = true
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	gid := -1
	if s.access.hasGroup {
		// Members of telemetryGroup reach the socket; its mode stays 0660
		// and PolicyService still checks the peer's uid.
		gid = int(s.access.telemetryGID)
		if ours {
			// They must also pass through the directory, which systemd
			// creates root:root 0750 (RuntimeDirectoryMode). Only the
			// agent's own directory is regrouped, never one an admin chose.
			if err := groupTraversable(dir, gid); err != nil {
				s.log.Warn("telemetryGroup members cannot reach the unix socket", "dir", dir, "err", err)
			}
		}
	}
	ln, err := bindPrivately(path, gid)
	if err != nil {
		return nil, err
	}
	l := &listener{name: "unix://" + path, network: "unix", ln: &limitListener{Listener: ln, a: s.access, extra: unixReserve}, policyOK: true,
		cleanup: func() { os.Remove(path) }}
	s.newGRPC(l, peer.Credentials(nil, peer.ViaUnix, s.access.admit))
	return l, nil
}

// groupTraversable gives gid the directory's group, provided that the
// directory is root's and nobody but root can write to it (a directory
// others can write to is not one to extend trust to).
func groupTraversable(dir string, gid int) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.IsDir() || st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is not a directory owned and writable only by root", dir)
	}
	if int(st.Gid) == gid {
		return nil
	}
	return os.Lchown(dir, -1, gid)
}

func bindPrivately(path string, gid int) (net.Listener, error) {
	private, err := os.MkdirTemp(filepath.Dir(path), ".kubearmor-sock-")
	if err != nil {
		return nil, fmt.Errorf("feeder: socket: %w", err)
	}
	defer os.RemoveAll(private)
	tmp := filepath.Join(private, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("feeder: listen on %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // it will not be at tmp any more
	if err := os.Chmod(tmp, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("feeder: socket mode: %w", err)
	}
	if gid >= 0 {
		if err := os.Chown(tmp, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("feeder: socket group: %w", err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("feeder: socket %s: %w", path, err)
	}
	return ln, nil
}

// removeStaleSocket deletes a socket left by an agent that did not exit
// cleanly, and refuses to take over one that is still answering.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("feeder: socket %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("feeder: %s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("feeder: %s is in use by another process", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("feeder: socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("feeder: remove stale socket: %w", err)
	}
	return nil
}

// MaxRequestBytes bounds one gRPC request. It is above hostpolicy's
// document limit so an oversized policy gets the clear Invalid status
// rather than a transport error.
const MaxRequestBytes = 4 << 20

func (s *Server) newGRPC(l *listener, creds credentials.TransportCredentials) {
	opts := []grpc.ServerOption{
		// As upstream: ping every second, drop a peer silent for 5 s, and
		// let clients ping without active streams.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Second, Timeout: 5 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(MaxRequestBytes),
		grpc.ForceServerCodecV2(newWireCodec()),
		// Bounds the TLS handshake and the wait for the HTTP/2 preface:
		// a client that connects and sends nothing is dropped.
		grpc.ConnectionTimeout(s.opts.ConnectionTimeout),
		grpc.Creds(creds),
		grpc.ChainUnaryInterceptor(s.recoverUnary, s.access.unary(l)),
		grpc.ChainStreamInterceptor(s.recoverStream, s.access.stream(l)),
	}
	srv := grpc.NewServer(opts...)
	kubearmorpb.RegisterLogServiceServer(srv, &logService{s: s})
	policypb.RegisterPolicyServiceServer(srv, &policyService{s: s})
	policypb.RegisterProbeServiceServer(srv, &probeService{s: s})
	statuspb.RegisterAgentStatusServer(srv, &statusService{s: s})
	hs := health.NewServer()
	for _, name := range []string{"", kubearmorpb.LogService_ServiceDesc.ServiceName, policypb.PolicyService_ServiceDesc.ServiceName,
		policypb.ProbeService_ServiceDesc.ServiceName, statuspb.AgentStatus_ServiceDesc.ServiceName} {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv) // as upstream; lets grpcurl and SIEM tooling discover the API
	l.srv, l.health = srv, hs
}

// A bug triggered by one request must not take the agent down.
func (s *Server) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in gRPC handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	return h(ctx, req)
}

func (s *Server) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in gRPC handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	return h(srv, ss)
}
