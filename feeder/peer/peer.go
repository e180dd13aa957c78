// Package peer finds out who is on the other end of a gRPC connection, from
// the kernel rather than from anything the client says: SO_PEERCRED and
// SO_PEERGROUPS on the unix socket, the socket-diagnostics netlink family
// (the uid that owns the client's TCP socket) on loopback TCP, and the
// verified client certificate with mutual TLS. The identity is computed once
// per connection, in the TLS-or-plaintext handshake, and reaches handlers
// through grpc/peer.FromContext as an AuthInfo.
package peer

import (
	"context"
	"fmt"
	"net"
	"os/user"
	"slices"
	"strconv"

	grpcpeer "google.golang.org/grpc/peer"
)

// Ways a peer reached the agent.
const (
	ViaUnix = "unix"
	ViaTCP  = "tcp"
	ViaTLS  = "tls"
)

// Identity is who a connection belongs to. A peer whose identification
// failed has Err set and must be treated as an unprivileged user.
type Identity struct {
	UID, GID   uint32
	Groups     []uint32 // supplementary groups (with GID, the groups the peer is in)
	PID        int32    // 0 = unknown
	Via        string   // ViaUnix, ViaTCP or ViaTLS
	Addr       string   // the peer's address ("unix" for the socket)
	TLSSubject string   // subject of the verified client certificate, if any

	// Local is true for peers on this host: the unix socket, or a
	// loopback address (even when the uid could not be found).
	Local bool
	// Inode is the client's socket inode (loopback TCP), used to find its
	// process on demand (ResolvePID).
	Inode uint32
	// Err says why the peer's uid is not known ("" when it is).
	Err error
}

// Known reports whether the peer's uid was found by the kernel.
func (id *Identity) Known() bool { return id.Err == nil && (id.Via == ViaUnix || id.Inode != 0) }

// Root reports whether the peer is a process of uid 0 on this host, as the
// kernel says.
func (id *Identity) Root() bool { return id.Known() && id.UID == 0 }

// InGroup reports whether a known local peer is in group gid.
func (id *Identity) InGroup(gid uint32) bool {
	return id.Known() && (id.GID == gid || slices.Contains(id.Groups, gid))
}

// Key names the peer for per-user limits: its uid, its certificate
// subject, or "unknown" (every unidentified peer shares one budget).
func (id *Identity) Key() string {
	switch {
	case id.Known():
		return "uid:" + strconv.FormatUint(uint64(id.UID), 10)
	case id.TLSSubject != "":
		return "tls:" + id.TLSSubject
	}
	return "unknown"
}

// ResolvePID finds the process holding the client's TCP socket, when the
// pid is not known yet, by scanning /proc/*/fd. It is costly: call it only
// when the pid is worth it (a policy change).
func (id *Identity) ResolvePID() int32 {
	if id.PID == 0 && id.Inode != 0 {
		id.PID = pidOfSocket(id.Inode)
	}
	return id.PID
}

// LogAttrs are the attributes that name the peer in the agent's log.
func (id *Identity) LogAttrs() []any {
	attrs := []any{"via", id.Via, "addr", id.Addr}
	if id.Known() {
		attrs = append(attrs, "uid", id.UID)
		if id.PID != 0 {
			attrs = append(attrs, "pid", id.PID)
		}
	}
	if id.TLSSubject != "" {
		attrs = append(attrs, "tlsSubject", id.TLSSubject)
	}
	if id.Err != nil {
		attrs = append(attrs, "unidentified", id.Err.Error())
	}
	return attrs
}

// String is a short description for messages.
func (id *Identity) String() string {
	s := id.Via
	if id.Addr != "" && id.Addr != id.Via {
		s += " " + id.Addr
	}
	if id.Known() {
		s += " uid " + strconv.FormatUint(uint64(id.UID), 10)
		if id.PID != 0 {
			s += " pid " + strconv.FormatInt(int64(id.PID), 10)
		}
	}
	if id.TLSSubject != "" {
		s += " subject " + strconv.Quote(id.TLSSubject)
	}
	if id.Err != nil {
		s += " (unidentified)"
	}
	return s
}

// FromContext returns the identity of an RPC's peer. A context without one
// (no peer, or a server not using Credentials) yields an unidentified peer.
func FromContext(ctx context.Context) *Identity {
	p, ok := grpcpeer.FromContext(ctx)
	if ok {
		if ai, ok := p.AuthInfo.(*AuthInfo); ok {
			return &ai.Identity
		}
	}
	addr := "unknown"
	if ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	return &Identity{Addr: addr, Err: fmt.Errorf("no peer identity on this connection")}
}

// OfUnix reads the credentials of the process at the other end of a unix
// socket connection (as they were when it connected).
func OfUnix(c net.Conn) Identity {
	id := Identity{Via: ViaUnix, Addr: "unix", Local: true}
	cred, groups, err := peerCred(c)
	if err != nil {
		id.Err = err
		return id
	}
	id.UID, id.GID, id.PID, id.Groups = cred.Uid, cred.Gid, cred.Pid, groups
	return id
}

// OfTCP identifies the owner of a loopback TCP client through the kernel's
// socket diagnostics; its groups come from the user database. A peer that
// is not on loopback cannot be identified this way.
func OfTCP(local, remote net.Addr) Identity {
	id := Identity{Via: ViaTCP, Addr: remote.String()}
	l, lok := local.(*net.TCPAddr)
	r, rok := remote.(*net.TCPAddr)
	if !lok || !rok {
		id.Err = fmt.Errorf("not a TCP connection (%s)", remote.Network())
		return id
	}
	id.Local = r.IP.IsLoopback()
	if !id.Local {
		id.Err = fmt.Errorf("%s is not on loopback: no local user to identify", r)
		return id
	}
	// The client's socket has our remote end as its source.
	owner, err := TCPOwner(r.AddrPort(), l.AddrPort())
	if err != nil {
		id.Err = err
		return id
	}
	id.UID, id.Inode = owner.UID, owner.Inode
	if id.Inode == 0 {
		id.Err = fmt.Errorf("the kernel reported no socket inode for %s", r)
		return id
	}
	if id.UID != 0 {
		id.GID, id.Groups = userGroups(id.UID)
	}
	return id
}

// userGroups returns a user's primary group and its other groups from the
// user database. A uid with no entry is in no group.
func userGroups(uid uint32) (uint32, []uint32) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return ^uint32(0), nil // no group: never matches a real gid
	}
	gid := ^uint32(0)
	if g, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
		gid = uint32(g)
	}
	ids, _ := u.GroupIds()
	var groups []uint32
	for _, s := range ids {
		if g, err := strconv.ParseUint(s, 10, 32); err == nil {
			groups = append(groups, uint32(g))
		}
	}
	return gid, groups
}

// LookupGroup returns the gid of a group name from the group database.
func LookupGroup(name string) (uint32, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("group %s: gid %q: %w", name, g.Gid, err)
	}
	return uint32(n), nil
}
