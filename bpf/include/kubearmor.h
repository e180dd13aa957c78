/* What every BPF program of the agent shares: the verdicts and rule slots
 * the enforcers report (equal to event.Verdict in Go: each enforcer's
 * package tests that its generated constants agree), the kernel ABI numbers
 * vmlinux.h does not carry (macros in the uapi headers), and the one rule
 * for a socket created with protocol 0.
 */
#ifndef KUBEARMOR_H
#define KUBEARMOR_H

/* Verdicts of an enforcer's event. */
enum verdict {
	V_NONE = 0,
	V_AUDIT = 1,
	V_BLOCK = 2,
	V_POSTURE_AUDIT = 3,
	V_POSTURE_BLOCK = 4,
};

/* Slots of a rule value: at most one rule per action on one key. */
enum slot {
	SLOT_BLOCK = 0,
	SLOT_AUDIT = 1,
	SLOT_ALLOW = 2,
	NSLOTS = 3,
};

/* linux/socket.h, linux/net.h, linux/in.h */
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

/* implied_protocol is the protocol an AF_INET or AF_INET6 socket of type
 * gets when created with protocol 0: TCP for stream sockets, UDP for
 * datagram sockets (hostpolicy.ImpliedProtocol in Go). */
static __always_inline int implied_protocol(int type, int protocol)
{
	if (protocol == 0 && type == SOCK_STREAM)
		return IPPROTO_TCP;
	if (protocol == 0 && type == SOCK_DGRAM)
		return IPPROTO_UDP;
	return protocol;
}

#endif
