#!/bin/sh
# Issue 21: AppArmor enforcement without gaps across agent restarts, crashes
# and upgrades. A loop tries a blocked exec and a blocked open all along; the
# agent is (a) killed with SIGKILL and started again, (b) stopped with
# SIGTERM and started again (systemctl restart), (c) replaced by another
# build (its version is written into every profile, so every profile's text
# changes and is replaced in place). Each new agent adopts the profiles it
# finds loaded instead of unloading and reloading them. Not one attempt may
# succeed, and the refusals of each gap arrive as alerts, replayed from the
# kernel log, or are counted where its rate limit suppressed them. Then the ways out: kubearmor detach, an agent of another tier,
# and an agent run from a shell, which unloads on exit: nothing stays loaded.
# vmtest: --lsm lockdown,capability,landlock,yama,apparmor
# vmtest-build: go build -trimpath -ldflags '-s -w -X main.version=upgrade-test' -o "$VMTEST_ARTIFACTS/kubearmor-next" ./cmd/kubearmor
# vmtest: --add vmtests/lib/guest.sh --add $VMTEST_ARTIFACTS/kubearmor-next --timeout 900
. /opt/vmtest/guest.sh

PROFILES=/sys/kernel/security/apparmor/profiles
WAIT_SECS=180
gap_fixture true gapa gapb gapc

ours() { grep -c '^kubearmor-' $PROFILES; }
# rev: AppArmor's policy revision, which every load, replacement and
# removal raises (a read blocks until it changes once it has been read by
# this open file, hence the timeout)
rev() { timeout 3 head -n 1 /sys/kernel/security/apparmor/policy/revision 2>/dev/null; }

start_agent --lsm apparmor --detach-on-exit=false
gap_policy
# A program started by a confined shell is what AppArmor mediates: a
# process older than the profiles keeps its (un)confinement.
denied "exec refused" "Permission denied" /bin/sh -c /tmp/blocked/true
denied "open refused" "Permission denied" /tmp/cat /srv/sec/secret.txt
rev1=$(rev)
echo "AppArmor policy revision: $rev1"
check "the policy revision is readable" test -n "$rev1"

# The loop: every success is a gap.
: > /tmp/leak
( n=0; while [ ! -e /tmp/loop.stop ]; do
    /bin/sh -c /tmp/blocked/true 2>/dev/null && echo "exec $(date +%s.%N)" >> /tmp/leak
    /tmp/cat /srv/sec/secret.txt >/dev/null 2>&1 && echo "open $(date +%s.%N)" >> /tmp/leak
    n=$((n + 1)); echo $n > /tmp/loop.count
    # Two denials a round stay under the kernel log's rate limit (10 per
    # 5 s): when the limit holds back the last records of a gap, the kernel
    # announces how many only with the next record it prints, after the
    # next agent has read the log, and they are neither replayed nor counted.
    sleep 1.5
  done ) &
LOOP=$!

# gap_reported NAME: the refusal of /tmp/blocked/NAME while no agent ran
# arrives as an alert, or the kernel log's rate limit suppressed records of
# the gap and the agent counted them (printk_ratelimit: 10 per 5 s).
gap_reported() {
  keep=$WAIT_SECS; WAIT_SECS=30
  wait_for "$ALERTS" "\"Resource\":\"/tmp/blocked/$1\"" '"Action":"Block"' '"Enforcer":"AppArmor"' >/dev/null; got=$?
  WAIT_SECS=$keep
  if [ $got = 0 ]; then
    pass "the alert of the gap ($1) arrives after the start"
  elif grep 'replayed from the kernel log' "$AGENT_LOG" | grep -Eq 'suppressed_by_rate_limit=[1-9]'; then
    pass "the gap's refusal of $1 was suppressed by the kernel log's rate limit and counted: $(grep -o 'replayed=[0-9]* suppressed_by_rate_limit=[0-9]*' "$AGENT_LOG" | tail -1)"
  else
    fail "the gap's refusal of $1 neither arrived nor was counted"; grep 'kernel log\|audit serial' "$AGENT_LOG"
  fi
  check "the agent replayed verdicts of the gap from the kernel log" grep -Eq 'replayed from the kernel log.* replayed=[1-9]' "$AGENT_LOG"
}

# attempts_during CMD...: run CMD and check the loop made attempts meanwhile.
attempts_during() {
  before=$(cat /tmp/loop.count 2>/dev/null || echo 0)
  "$@"
  sleep 2
  after=$(cat /tmp/loop.count)
  if [ "$after" -gt "$before" ]; then pass "the loop tried $((after - before)) times while no agent ran"; else fail "the loop did not run during the gap"; fi
}

echo "== (a) kill -9"
kill -KILL "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
attempts_during denied "gap (kill -9): exec refused with no agent" "Permission denied" /bin/sh -c /tmp/blocked/gapa
check "gap (kill -9): the profiles stay loaded" test "$(ours)" -gt 0
start_agent --lsm apparmor --detach-on-exit=false
check "the new agent adopted the loaded profiles, replacing none" grep -q 'adopted [0-9]* AppArmor profiles an earlier agent left loaded: [0-9]* unchanged, 0 replaced in place, 0 removed' "$AGENT_LOG"
check "no profile was loaded, replaced or removed (policy revision $rev1)" test "$(rev)" = "$rev1"
check "no profile was removed at start" sh -c "! grep -q 'removing profile' $AGENT_LOG"
gap_reported gapa
denied "after adoption the exec is refused" "Permission denied" /bin/sh -c /tmp/blocked/true
alert "the adopting agent reports the verdicts" '"Resource":"/tmp/blocked/true' '"Action":"Block"' '"Enforcer":"AppArmor"'
changed sed -i 's#path: /srv/sec/secret.txt#path: /srv/sec/secret.txt\n    - path: /srv/sec/other.txt#' /etc/kubearmor/policies/gap.yaml
denied "an Apply after adoption replaces the profile in place" "Permission denied" /tmp/cat /srv/sec/secret.txt
check "the changed policy replaced a profile (revision moved)" test "$(rev)" != "$rev1"

echo "== (b) SIGTERM and start (a restart)"
stop_agent
check "the agent said it left the profiles loaded" grep -q 'enforcer left loaded' "$AGENT_LOG"
attempts_during denied "gap (restart): exec refused with no agent" "Permission denied" /bin/sh -c /tmp/blocked/gapb
rev2=$(rev)
start_agent --lsm apparmor --detach-on-exit=false
check "the restarted agent adopted the profiles, replacing none" grep -q 'adopted [0-9]* AppArmor profiles an earlier agent left loaded: [0-9]* unchanged, 0 replaced' "$AGENT_LOG"
check "no profile was reloaded on restart (policy revision $rev2)" test "$(rev)" = "$rev2"
gap_reported gapb

echo "== (c) upgrade to another build"
stop_agent
cp /opt/vmtest/kubearmor-next /usr/bin/kubearmor.new && mv /usr/bin/kubearmor.new /usr/bin/kubearmor
attempts_during denied "gap (upgrade): exec refused with no agent" "Permission denied" /bin/sh -c /tmp/blocked/gapc
start_agent --lsm apparmor --detach-on-exit=false
grep 'adopted' "$AGENT_LOG"
check "the new build replaced every adopted profile in place" grep -q 'adopted \([0-9]*\) AppArmor profiles an earlier agent left loaded: 0 unchanged, [1-9][0-9]* replaced in place, 0 removed' "$AGENT_LOG"
check "the loaded profile text names the new build" sh -c 'head -1 /run/kubearmor/apparmor/kubearmor-host | grep -q "# kubearmor upgrade-test"'
check "the profiles were replaced (revision moved)" test "$(rev)" != "$rev2"
gap_reported gapc
denied "after the upgrade the exec is refused" "Permission denied" /bin/sh -c /tmp/blocked/true
denied "after the upgrade the open is refused" "Permission denied" /tmp/cat /srv/sec/secret.txt
alert "the new build reports" '"Resource":"/srv/sec/secret.txt' '"Action":"Block"' '"Enforcer":"AppArmor"'

touch /tmp/loop.stop; wait $LOOP
if [ -s /tmp/leak ]; then fail "attempts succeeded: $(head -3 /tmp/leak)"; else pass "not one of $(cat /tmp/loop.count) attempts (an exec and an open each) succeeded"; fi

echo "== the way out: kubearmor detach with no agent"
kill -KILL "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
denied "killed agent: still enforced" "Permission denied" /bin/sh -c /tmp/blocked/true
check "kubearmor detach" kubearmor detach
check "after detach no profile of ours is loaded" test "$(ours)" = 0
check "after detach the exec works" /bin/sh -c /tmp/blocked/true
check "after detach the open works" /tmp/cat /srv/sec/secret.txt
check "after detach no profile file is left" test ! -e /run/kubearmor/apparmor/kubearmor-host

echo "== an agent of another tier removes what an AppArmor agent left"
start_agent --lsm apparmor --detach-on-exit=false
kill -KILL "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
check "profiles left loaded by the killed agent" test "$(ours)" -gt 0
start_agent --lsm fanotify
check "the fanotify agent removed them" grep -q 'removed the AppArmor profiles an earlier agent left loaded' "$AGENT_LOG"
check "no profile of ours is loaded" test "$(ours)" = 0
check "the fanotify tier says it cannot outlive its process" grep -q 'enforcement ends with this process' "$AGENT_LOG"
stop_agent

echo "== a run from a shell unloads on exit"
start_agent --lsm apparmor
denied "enforced again" "Permission denied" /bin/sh -c /tmp/blocked/true
stop_agent
check "no enforcement after stop" /bin/sh -c /tmp/blocked/true
check "no enforcement after stop (open)" /tmp/cat /srv/sec/secret.txt
check "no profile of ours left" test "$(ours)" = 0
finish
