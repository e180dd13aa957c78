#!/bin/sh
# Issue 12 against the BPF-LSM tier: an unprivileged user (the test binary's
# attacker, cmd/kubearmor/attack_test.go, dropping to uid 65534) churns
# subscriptions, tries PolicyService over TCP and the unix socket, stalls
# every stream it can get, and floods the agent with idle TCP connections up
# to its descriptor limit. After each attack the agent still runs, answers
# root over the unix socket, and the Block holds. A SIGPIPE does not stop it.
# vmtest-build: CGO_ENABLED=0 go test -c -o "$VMTEST_ARTIFACTS/kubearmor.test" ./cmd/kubearmor
# vmtest: --add vmtests/lib/guest.sh --add $VMTEST_ARTIFACTS/kubearmor.test --timeout 900
# The agent names loopback TCP peers through sock_diag's TCP handler, a module
# on Debian's kernels that a host loads on demand and this guest cannot.
# vmtest: --module tcp_diag
. /opt/vmtest/guest.sh

ATTACKER=/opt/vmtest/kubearmor.test
SOCK=/run/kubearmor/kubearmor.sock
TCP=127.0.0.1:32767
CHURN_CYCLES=${CHURN_CYCLES:-3000}
# Loading BPF-LSM under TCG on a busy host can take minutes; the waits are
# hang guards only.
WAIT_SECS=${WAIT_SECS:-300}

# "$ATTACKER" MODE FLAGS... is the attacker; it drops to uid 65534 unless
# -uid 0. Run directly (not through a shell function) so that $! of a
# background attacker is the attacker itself, which SIGTERM asks to leave.
export KUBEARMOR_TEST_ATTACK=1

# value FILE KEY: the value of KEY=VALUE in an attacker's report (0 if none).
value() { v=$(sed -n "s/^$2=//p" "$1" | tail -n 1); echo "${v:-0}"; }

# The files the policy names; busybox copies, named for their applet.
mkdir -p /srv/sd/blocked /srv/sd/other /run/kubearmor
chmod 0755 /run/kubearmor
echo secret > /srv/sd/blocked.txt
echo allowed > /srv/sd/allowed.txt
cp /bin/busybox /srv/sd/blocked/true
cp /bin/busybox /srv/sd/other/true
cat > /etc/kubearmor/policies/admin-block.yaml <<'EOF'
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: admin-block
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: vmtest
  file:
    matchPaths:
    - path: /srv/sd/blocked.txt
  process:
    matchPaths:
    - path: /srv/sd/blocked/true
  action: Block
EOF
cp /etc/kubearmor/policies/admin-block.yaml /tmp/admin-block.yaml.orig

# run_agent WRAPPER... -- FLAGS...: start the agent with gRPC on TCP and the
# unix socket (made reachable for everyone, so the agent's own peer check is
# what refuses), wait until it is ready.
run_agent() {
  wrap=''
  while [ "$1" != -- ]; do wrap="$wrap $1"; shift; done
  shift
  ALERTS=/tmp/alerts.jsonl
  AGENT_LOG=/tmp/agent.log
  : > "$ALERTS"
  : > "$AGENT_LOG"
  # shellcheck disable=SC2086 # $wrap is a command prefix
  $wrap kubearmor --logPath "$ALERTS" --alertThrottling=false --hostVisibility none \
    --gRPC "$TCP" --socket "$SOCK" "$@" > "$AGENT_LOG" 2>&1 &
  AGENT_PID=$!
  if ! wait_for "$AGENT_LOG" "kubearmor ready" >/dev/null; then
    fail "agent did not start"; cat "$AGENT_LOG"; exit 1
  fi
  chmod 0666 "$SOCK"
}

# healthy WHEN: the agent runs, answers root's status over the unix socket
# with the BPF-LSM tier, and the Block holds while other files and programs
# work.
healthy() {
  if kill -0 "$AGENT_PID" 2>/dev/null && ! grep -q "stopping kubearmor" "$AGENT_LOG"; then
    pass "$1: the agent runs"
  else
    fail "$1: the agent is gone"; tail -n 20 "$AGENT_LOG"; finish
  fi
  check "$1: root gets status over the unix socket" sh -c "kubearmor status --addr $SOCK | grep -q 'Enforcer: *BPFLSM'"
  denied "$1: the Block holds (open)" "Permission denied" cat /srv/sd/blocked.txt
  denied "$1: the Block holds (exec)" "Permission denied" /srv/sd/blocked/true
  check "$1: other files open" grep -q allowed /srv/sd/allowed.txt
  check "$1: other programs run" /srv/sd/other/true
}

# stalled_vs_root WHEN: uid 65534 takes every stream it can get on both
# doors and never reads; root's `kubearmor logs` over the unix socket still
# subscribes and gets the Block's alert.
stalled_vs_root() {
  "$ATTACKER" stall -target "$TCP" -conns 48 -streams 16 > /tmp/stall-tcp.out 2>&1 &
  stall_tcp=$!
  "$ATTACKER" stall -target "unix://$SOCK" -conns 48 -streams 16 > /tmp/stall-unix.out 2>&1 &
  stall_unix=$!
  wait_for /tmp/stall-tcp.out ready >/dev/null || fail "$1: the TCP staller did not get ready"
  wait_for /tmp/stall-unix.out ready >/dev/null || fail "$1: the unix staller did not get ready"
  sed 's/^/     | tcp: /' /tmp/stall-tcp.out
  sed 's/^/     | unix: /' /tmp/stall-unix.out
  if [ $(($(value /tmp/stall-tcp.out opened_Accepted) + $(value /tmp/stall-unix.out opened_Accepted))) -gt 0 ]; then
    pass "$1: the attacker holds stalled streams"
  else
    fail "$1: the attacker got no stream: nothing was tested"
  fi
  kubearmor logs --addr "$SOCK" --filter policy --json --limit 1 > /tmp/root-logs.out 2>&1 &
  root_logs=$!
  i=0
  while kill -0 $root_logs 2>/dev/null && [ $i -lt 150 ]; do
    cat /srv/sd/blocked.txt >/dev/null 2>&1
    i=$((i + 1)); sleep 0.4
  done
  kill $root_logs 2>/dev/null
  check "$1: root's kubearmor logs over the unix socket gets the Block alert" grep -q '"PolicyName":"admin-block"' /tmp/root-logs.out
  healthy "$1: with stalled subscribers"
  kill -TERM $stall_tcp $stall_unix
  wait $stall_tcp $stall_unix
  sed -n 's/^ended_/     | tcp: ended_/p' /tmp/stall-tcp.out
  sed -n 's/^ended_/     | unix: ended_/p' /tmp/stall-unix.out
  healthy "$1: after the stalled subscribers left"
}

cat > /etc/kubearmor/kubearmor.yaml <<'EOF'
cluster: vmtest
telemetryGroup: "*"
EOF
run_agent -- --lsm bpf
check "BPF-LSM is the enforcer" grep -q 'enforcer chosen.*enforcer=BPFLSM' "$AGENT_LOG"
healthy "at start"

echo "== churn: connect, subscribe, vanish ($CHURN_CYCLES cycles or 4 minutes)"
"$ATTACKER" churn -target "$TCP" -cycles "$CHURN_CYCLES" -seconds 240 > /tmp/churn.out 2>&1
sed 's/^/     | /' /tmp/churn.out
check "the churn ran as uid 65534" grep -qx uid=65534 /tmp/churn.out
if [ "$(value /tmp/churn.out outcome_Received)" -gt 0 ]; then pass "churn cycles reached live streams"; else fail "no churn cycle reached a live stream"; fi
healthy "after the churn"

echo "== PolicyService as uid 65534: refused on both doors"
for target in "$TCP" "unix://$SOCK"; do
  "$ATTACKER" policy -target "$target" -op add -name attacker-policy -host vmtest -path /srv/sd/allowed.txt > /tmp/pol.out 2>&1
  check "add over $target is refused" grep -qx add=PermissionDenied /tmp/pol.out
  "$ATTACKER" policy -target "$target" -op delete -name admin-block -host vmtest -path /srv/sd/blocked.txt > /tmp/pol.out 2>&1
  check "delete of the admin's policy over $target is refused" grep -qx delete=PermissionDenied /tmp/pol.out
done
check "the admin's policy file is untouched" cmp /etc/kubearmor/policies/admin-block.yaml /tmp/admin-block.yaml.orig
check "no policy file was added" test "$(echo /etc/kubearmor/policies/*)" = /etc/kubearmor/policies/admin-block.yaml
check "the refusal is logged with the peer's uid" sh -c "grep 'refused' $AGENT_LOG | grep 'PolicyService' | grep -q 'uid=65534'"
healthy "after the refused policy changes"

echo "== PolicyService as root: applied on both doors"
for door in tcp unix; do
  target=$TCP; [ $door = unix ] && target=unix://$SOCK
  "$ATTACKER" policy -uid 0 -target "$target" -op add -name root-$door -host vmtest -path /srv/sd/allowed.txt > /tmp/pol.out 2>&1
  sed 's/^/     | /' /tmp/pol.out
  check "root's add over $door is applied" grep -qx status=Applied /tmp/pol.out
  check "root's policy file over $door exists" test -f /etc/kubearmor/policies/root-$door.yaml
  "$ATTACKER" policy -uid 0 -target "$target" -op delete -name root-$door -host vmtest -path /srv/sd/allowed.txt > /tmp/pol.out 2>&1
  check "root's delete over $door is applied" grep -qx status=Deleted /tmp/pol.out
  check "root's policy file over $door is gone" test ! -e /etc/kubearmor/policies/root-$door.yaml
done

echo "== stalled subscribers of uid 65534 (per-user limits) vs root's subscription"
stalled_vs_root "per-user limits"

echo "== SIGPIPE"
kill -PIPE "$AGENT_PID"; kill -PIPE "$AGENT_PID"
healthy "after SIGPIPE"
stop_agent

echo "== RLIMIT_NOFILE 512 and no per-user limits: stalled subscribers, then idle TCP connections up to the limit"
run_agent "$ATTACKER" nofile -n 512 -- --lsm bpf --maxConnectionsPerUser 100000 --maxStreamsPerUser 100000
check "the agent runs with RLIMIT_NOFILE 512" grep -q "Max open files *512 *512" /proc/$AGENT_PID/limits
stalled_vs_root "no per-user limits (root's reserved slots)"
"$ATTACKER" flood -target "$TCP" -conns 1024 > /tmp/flood.out 2>&1 &
flood=$!
wait_for /tmp/flood.out ready >/dev/null || fail "the flood did not get ready"
sed 's/^/     | /' /tmp/flood.out
set -- /proc/"$AGENT_PID"/fd/*
echo "     the agent holds $# descriptors of 512"
healthy "while the attacker holds connections"
kill -TERM $flood
wait $flood
sed 's/^/     | /' /tmp/flood.out | tail -n 2
healthy "after the attacker left"
if grep -q "too many open files" "$AGENT_LOG"; then fail "the agent ran out of descriptors"; else pass "the agent never ran out of descriptors"; fi
stop_agent
finish
