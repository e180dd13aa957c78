package feeder

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/armorhost/kubearmor/feeder/kubearmorpb"
	"github.com/armorhost/kubearmor/feeder/policypb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:32767": true, "localhost:1": true, "[::1]:32767": true, "127.9.9.9:1": true,
		":32767": false, "0.0.0.0:32767": false, "[::]:1": false, "10.0.0.1:32767": false, "example.com:1": false, "32767": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v", addr, got)
		}
	}
}

func TestNonLoopbackRequiresTLS(t *testing.T) {
	for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0", "192.0.2.1:32767"} {
		_, err := New(Options{TCP: addr})
		if err == nil || !strings.Contains(err.Error(), "without TLS") {
			t.Errorf("New(TCP %s, no TLS) = %v, want a refusal", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0"} {
		if _, err := New(Options{TCP: addr}); err != nil {
			t.Errorf("New(TCP %s): %v", addr, err)
		}
	}
	if _, err := New(Options{TCP: "nonsense"}); err == nil {
		t.Error("accepted an address without a port")
	}
}

// pki writes a CA, a server certificate for 127.0.0.1 and a client
// certificate into dir, and returns the client's TLS config.
func pki(t *testing.T, dir string) (files *TLSFiles, client *tls.Config) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	writePEM := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (certPath, keyPath string) {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalECPrivateKey(k)
		return writePEM(name+".crt", "CERTIFICATE", der), writePEM(name+".key", "EC PRIVATE KEY", kd)
	}
	caPath := writePEM("ca.crt", "CERTIFICATE", caDER)
	sc, sk := issue("server", 2, x509.ExtKeyUsageServerAuth)
	cc, ck := issue("client", 3, x509.ExtKeyUsageClientAuth)
	pair, err := tls.LoadX509KeyPair(cc, ck)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &TLSFiles{Cert: sc, Key: sk, CA: caPath}, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1"}
}

func dialTLS(t *testing.T, addr string, conf *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// On every interface (not loopback): mutual TLS lets PolicyService through;
// server-only TLS serves LogService but refuses PolicyService; a client
// without a certificate, or speaking plaintext, gets nothing.
func TestTLSListener(t *testing.T) {
	files, clientConf := pki(t, t.TempDir())
	ctx := context.Background()
	policy := &policypb.Policy{Policy: []byte(karmorAddSleep)}

	t.Run("mutual TLS", func(t *testing.T) {
		logs := &logBuffer{}
		a := startAgent(t, func(o *Options) {
			o.TCP = "0.0.0.0:0"
			o.TLS = files
			o.Policies = &dirApplier{dir: t.TempDir()}
			o.Log = slog.New(slog.NewJSONHandler(logs, nil))
		})
		_, port, _ := net.SplitHostPort(a.tcp)
		addr := "127.0.0.1:" + port
		conn := dialTLS(t, addr, clientConf)
		if r, err := kubearmorpb.NewLogServiceClient(conn).HealthCheck(ctx, &kubearmorpb.NonceMessage{Nonce: 42}); err != nil || r.Retval != 42 {
			t.Fatalf("HealthCheck over mTLS: %v %v", r, err)
		}
		if r, err := policypb.NewPolicyServiceClient(conn).HostPolicy(ctx, policy); err != nil || r.Status != StatusApplied {
			t.Fatalf("hostPolicy over mTLS: %v %v", r, err)
		}
		// The change names the verified certificate (and, on loopback, the uid).
		if logs.find("PolicyService: host policy", map[string]any{"via": "tls", "tlsSubject": "CN=client", "uid": 0, "status": "Applied"}) == nil {
			t.Errorf("policy change over mTLS not logged with the TLS subject:\n%s", logs.b.String())
		}
		noCert := clientConf.Clone()
		noCert.Certificates = nil
		if _, err := kubearmorpb.NewLogServiceClient(dialTLS(t, addr, noCert)).HealthCheck(ctx, &kubearmorpb.NonceMessage{Nonce: 1}); status.Code(err) != codes.Unavailable {
			t.Errorf("client without a certificate: %v, want a failed handshake", err)
		}
		// What karmor does by default: plaintext h2c.
		if _, err := kubearmorpb.NewLogServiceClient(dial(t, addr)).HealthCheck(ctx, &kubearmorpb.NonceMessage{Nonce: 1}); status.Code(err) != codes.Unavailable {
			t.Errorf("plaintext client: %v, want Unavailable", err)
		}
	})

	t.Run("server TLS only", func(t *testing.T) {
		serverOnly := *files
		serverOnly.CA = ""
		a := startAgent(t, func(o *Options) { o.TCP = "0.0.0.0:0"; o.TLS = &serverOnly; o.Policies = &dirApplier{dir: t.TempDir()} })
		_, port, _ := net.SplitHostPort(a.tcp)
		conn := dialTLS(t, "127.0.0.1:"+port, clientConf)
		if r, err := kubearmorpb.NewLogServiceClient(conn).HealthCheck(ctx, &kubearmorpb.NonceMessage{Nonce: 7}); err != nil || r.Retval != 7 {
			t.Fatalf("HealthCheck over TLS: %v %v", r, err)
		}
		if _, err := policypb.NewPolicyServiceClient(conn).HostPolicy(ctx, policy); status.Code(err) != codes.PermissionDenied {
			t.Errorf("hostPolicy off loopback without mTLS: %v, want PermissionDenied", err)
		}
		// The unix socket is unaffected.
		if r, err := policypb.NewPolicyServiceClient(dial(t, "unix://"+a.socket)).HostPolicy(ctx, policy); err != nil || r.Status != StatusApplied {
			t.Errorf("hostPolicy over the unix socket: %v %v", r, err)
		}
	})

	t.Run("bad files", func(t *testing.T) {
		bad := *files
		bad.CA = bad.Key // not a certificate
		s, err := New(Options{TCP: "0.0.0.0:0", TLS: &bad})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Listen(); err == nil || !strings.Contains(err.Error(), "CA") {
			t.Errorf("Listen with a key as CA: %v", err)
		}
	})
}

func TestUnixSocketPermissions(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to check that other users are shut out")
	}
	a := startAgent(t, nil)
	fi, err := os.Stat(a.socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want socket 0660", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(a.socket))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o750 {
		t.Errorf("socket directory mode %v, want 0750", di.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(a.socket), ".kubearmor-sock-*")); len(left) != 0 {
		t.Errorf("private bind directories left behind: %v", left)
	}

	// An existing directory keeps its mode (think of /tmp), and the socket
	// is still 0660 and removed when the agent stops.
	shared := t.TempDir()
	if err := os.Chmod(shared, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(shared, "agent.sock")
	b := startAgent(t, func(o *Options) { o.TCP = ""; o.Socket = path })
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket in a shared directory: %v %v", fi, err)
	}
	if di, _ := os.Stat(shared); di.Mode().Perm() != 0o777 || di.Mode()&os.ModeSticky == 0 {
		t.Errorf("existing directory mode changed to %v", di.Mode())
	}
	b.cancel()
	<-b.done
	b.done <- nil // for the cleanup registered by startAgent
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after stop: %v", err)
	}
}

func TestUnixSocketTakeover(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kubearmor.sock")

	// A live agent's socket is never taken over.
	a := startAgent(t, func(o *Options) { o.TCP = ""; o.Socket = path })
	s2, err := New(Options{Socket: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Listen(); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second agent on a live socket: %v", err)
	}
	_ = a

	// A stale socket (its listener is gone) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	startAgent(t, func(o *Options) { o.TCP = ""; o.Socket = stale })

	// A regular file is never removed.
	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, []byte("x"), 0o600)
	s3, _ := New(Options{Socket: regular})
	if err := s3.Listen(); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("socket path is a regular file: %v", err)
	}
	if _, err := os.Stat(regular); err != nil {
		t.Fatal("regular file was removed")
	}
}

func TestNothingToListenOn(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err == nil {
		t.Fatal("Listen with no TCP address and no socket succeeded")
	}
}

func TestGroupTraversable(t *testing.T) {
	const nogroup = 65534
	for _, tc := range []struct {
		name string
		mode os.FileMode
		ok   bool
	}{
		{"root 0750", 0o750, true},
		{"group-writable", 0o770, false},
		{"world-writable", 0o777, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.mode); err != nil {
				t.Fatal(err)
			}
			err := groupTraversable(dir, nogroup)
			fi, _ := os.Stat(dir)
			gid := fi.Sys().(*syscall.Stat_t).Gid
			if tc.ok && (err != nil || gid != nogroup) {
				t.Fatalf("err %v, gid %d; want the directory's group to be %d", err, gid, nogroup)
			}
			if !tc.ok && (err == nil || gid == nogroup) {
				t.Fatalf("err %v, gid %d; want a refusal and the group unchanged", err, gid)
			}
		})
	}
}
