package peer

import (
	"context"
	"errors"
	"net"

	"google.golang.org/grpc/credentials"
)

// AuthInfo is what a handler finds in grpc/peer.FromContext(ctx).AuthInfo
// on a server using Credentials.
type AuthInfo struct {
	credentials.CommonAuthInfo
	Identity Identity
	TLS      *credentials.TLSInfo // nil on plaintext connections
}

// AuthType is "tls" or "insecure", as gRPC's own credentials say.
func (a *AuthInfo) AuthType() string {
	if a.TLS != nil {
		return a.TLS.AuthType()
	}
	return "insecure"
}

// Admit decides whether a connection with this identity may stay, and may
// wrap it (to release a per-user slot when it closes). An error closes it.
type Admit func(id *Identity, c net.Conn) (net.Conn, error)

// Credentials returns server transport credentials that run inner's
// handshake (nil: plaintext), identify the peer once, and offer the
// connection to admit (nil: every connection is admitted). via is ViaUnix
// for the unix socket and ViaTCP for TCP (ViaTLS is set when inner is TLS).
func Credentials(inner credentials.TransportCredentials, via string, admit Admit) credentials.TransportCredentials {
	return &creds{inner: inner, via: via, admit: admit}
}

type creds struct {
	inner credentials.TransportCredentials
	via   string
	admit Admit
}

func (c *creds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn := net.Conn(raw)
	info := &AuthInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}
	if c.inner != nil {
		tc, ai, err := c.inner.ServerHandshake(raw)
		if err != nil {
			return nil, nil, err
		}
		conn = tc
		if ti, ok := ai.(credentials.TLSInfo); ok {
			info.TLS = &ti
			info.CommonAuthInfo = ti.CommonAuthInfo
		}
	}
	if c.via == ViaUnix {
		info.Identity = OfUnix(raw)
	} else {
		info.Identity = OfTCP(raw.LocalAddr(), raw.RemoteAddr())
	}
	if info.TLS != nil {
		info.Identity.Via = ViaTLS
		if st := info.TLS.State; len(st.VerifiedChains) > 0 && len(st.PeerCertificates) > 0 {
			info.Identity.TLSSubject = st.PeerCertificates[0].Subject.String()
		}
	}
	if c.admit != nil {
		wrapped, err := c.admit(&info.Identity, conn)
		if err != nil {
			conn.Close()
			return nil, nil, err
		}
		conn = wrapped
	}
	return conn, info, nil
}

func (c *creds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("peer: server-side credentials only")
}

func (c *creds) Info() credentials.ProtocolInfo {
	if c.inner != nil {
		return c.inner.Info()
	}
	return credentials.ProtocolInfo{SecurityProtocol: "insecure"}
}

func (c *creds) Clone() credentials.TransportCredentials {
	out := *c
	if c.inner != nil {
		out.inner = c.inner.Clone()
	}
	return &out
}

//nolint:staticcheck // part of the interface
func (c *creds) OverrideServerName(string) error { return nil }
