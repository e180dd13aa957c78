#!/bin/sh
# Issue 21: BPF-LSM enforcement without gaps across agent restarts, crashes
# and upgrades. A loop tries a blocked exec and a blocked open all along;
# the agent is (a) killed with SIGKILL and started again, (b) stopped with
# SIGTERM and started again (what systemctl restart does), (c) replaced by
# "another build" (--bpf-object-version: the same object under another
# version name, so the new agent loads its own objects and swaps the links).
# Not one attempt may succeed, and what was refused while no agent ran
# arrives as an alert after the next start (from a replaced version too: its
# ring buffer is decoded when its record layout is this version's). Then
# the ways out: kubearmor detach, and an agent run from a
# shell, which detaches on exit: enforcement gone, nothing pinned.
# vmtest: --add vmtests/lib/guest.sh --timeout 900
. /opt/vmtest/guest.sh

PINS=/sys/fs/bpf/kubearmor
# Loading the objects takes close to a minute under TCG.
WAIT_SECS=240
gap_fixture true gapa gapb gapc

start_agent --detach-on-exit=false
gap_policy
denied "exec refused" "Permission denied" /tmp/blocked/true true
denied "open refused" "Permission denied" /tmp/cat /srv/sec/secret.txt

# The loop: every success is a gap.
: > /tmp/leak
( n=0; while [ ! -e /tmp/loop.stop ]; do
    /tmp/blocked/true true 2>/dev/null && echo "exec $(date +%s.%N)" >> /tmp/leak
    /tmp/cat /srv/sec/secret.txt >/dev/null 2>&1 && echo "open $(date +%s.%N)" >> /tmp/leak
    n=$((n + 1)); echo $n > /tmp/loop.count
    # Slow enough that the 4 MiB ring buffer holds a TCG start's worth of
    # refusals (a full one is counted, not a failure of this test).
    sleep 0.3
  done ) &
LOOP=$!

# attempts_during CMD...: run CMD and check the loop made attempts meanwhile.
attempts_during() {
  before=$(cat /tmp/loop.count 2>/dev/null || echo 0)
  "$@"
  sleep 2
  after=$(cat /tmp/loop.count)
  if [ "$after" -gt "$before" ]; then pass "the loop tried $((after - before)) times while no agent ran"; else fail "the loop did not run during the gap"; fi
}

pinned_links() { ls $PINS/*/links 2>/dev/null | grep -c enforce_ ; }

echo "== (a) kill -9"
kill -KILL "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
attempts_during denied "gap (kill -9): exec refused with no agent" "Permission denied" /tmp/blocked/gapa true
check "gap (kill -9): the links stay pinned" test "$(pinned_links)" -gt 0
start_agent --detach-on-exit=false
grep 'enforcer chosen\|starting kubearmor\|kubearmor ready' "$AGENT_LOG"
check "the new agent adopted the pinned enforcer" grep -q 'adopted the enforcer pinned in /sys/fs/bpf/kubearmor' "$AGENT_LOG"
alert "the alert of the gap arrives after the start" '"Resource":"/tmp/blocked/gapa' '"Action":"Block"' '"Enforcer":"BPFLSM"'
denied "after adoption the exec is refused" "Permission denied" /tmp/blocked/true true
changed sed -i 's#path: /srv/sec/secret.txt#path: /srv/sec/secret.txt\n    - path: /srv/sec/other.txt#' /etc/kubearmor/policies/gap.yaml
denied "an Apply after adoption swaps the rules in place" "Permission denied" /tmp/cat /srv/sec/secret.txt

echo "== (b) SIGTERM and start (a restart)"
stop_agent
check "the agent said it left the enforcer pinned" grep -q 'enforcer left pinned' "$AGENT_LOG"
attempts_during denied "gap (restart): exec refused with no agent" "Permission denied" /tmp/blocked/gapb true
start_agent --detach-on-exit=false
check "the restarted agent adopted the pinned enforcer" grep -q 'adopted the enforcer pinned' "$AGENT_LOG"
alert "the alert of the restart's gap arrives" '"Resource":"/tmp/blocked/gapb' '"Action":"Block"'

echo "== (c) upgrade to another object version"
stop_agent
old=$(ls $PINS)
attempts_during denied "gap (upgrade): exec refused with no agent" "Permission denied" /tmp/blocked/gapc true
start_agent --detach-on-exit=false --bpf-object-version upgrade-test
check "the new version replaced the old one" grep -q "object version upgrade-test replaced the pinned version \[$old\] with no gap" "$AGENT_LOG"
check "the old version's ring buffer was decoded (same record layout)" sh -c "grep 'replaced the pinned version' $AGENT_LOG | grep -Eq 'events left in its ring buffer: [1-9][0-9]* decoded, 0 counted'"
alert "the alert of the upgrade's gap arrives, from the old version's ring buffer" '"Resource":"/tmp/blocked/gapc' '"Action":"Block"' '"Enforcer":"BPFLSM"'
check "only the new version is pinned" test "$(ls $PINS)" = upgrade-test
check "the new version's links are pinned" test "$(pinned_links)" -gt 0
denied "after the upgrade the exec is refused" "Permission denied" /tmp/blocked/true true
denied "after the upgrade the open is refused" "Permission denied" /tmp/cat /srv/sec/secret.txt
alert "the new version reports" '"Resource":"/tmp/blocked/true' '"Action":"Block"'

touch /tmp/loop.stop; wait $LOOP
if [ -s /tmp/leak ]; then fail "attempts succeeded: $(head -3 /tmp/leak)"; else pass "not one of $(cat /tmp/loop.count) attempts succeeded"; fi

echo "== the way out: kubearmor detach with no agent"
kill -KILL "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
denied "killed agent: still enforced" "Permission denied" /tmp/blocked/true true
check "kubearmor detach" kubearmor detach
check "after detach the exec works" /tmp/blocked/true true
check "after detach the open works" /tmp/cat /srv/sec/secret.txt
check "after detach nothing is pinned" test ! -e $PINS

echo "== a run from a shell detaches on exit"
start_agent
denied "enforced again" "Permission denied" /tmp/blocked/true true
stop_agent
check "no enforcement after stop" /tmp/blocked/true true
check "no enforcement after stop (open)" /tmp/cat /srv/sec/secret.txt
check "no kubearmor pins left" test ! -e $PINS -o -z "$(ls -A $PINS 2>/dev/null)"
finish
