#!/bin/sh
# AppArmor tier end to end: the agent on a kernel without BPF-LSM picks
# AppArmor, blocks a process, a file and network protocols, raises alerts with
# Enforcer "AppArmor", and leaves no profile behind when it stops.
# vmtest: --lsm lockdown,capability,landlock,yama,apparmor
# shellcheck disable=SC2317 # functions run through check look unreachable
# shellcheck disable=SC2016 # sh -c scripts expand in the child
set -u
failed=0
check() { # check DESCRIPTION COMMAND...
  desc=$1; shift
  if "$@" >/dev/null 2>&1; then echo "ok   $desc"; else echo "FAIL $desc"; failed=1; fi
}
denied() { # denied COMMAND...: fails with "Permission denied"
  out=$("$@" 2>&1) && return 1
  case $out in *"ermission denied"*) return 0 ;; esac
  echo "     (got: $out)"; return 1
}
alert() { # alert POLICY RESOURCE-SUBSTRING: an AppArmor Block alert of POLICY is logged
  grep '"Type":"MatchedHostPolicy"' /tmp/alerts.json | grep "\"PolicyName\":\"$1\"" |
    grep '"Enforcer":"AppArmor"' | grep '"Action":"Block"' | grep -q "$2"
}

mkdir -p /tmp/pol /opt/blk
cp /bin/busybox /opt/blk/busybox
echo secret >/tmp/secret
cat >/tmp/pol/aa.yaml <<'YAML'
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: aa-process
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  process:
    matchPaths:
    - path: /opt/blk/busybox
  action: Block
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: aa-file
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  file:
    matchPaths:
    - path: /tmp/secret
  action: Block
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: aa-network
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  network:
    matchProtocols:
    - protocol: tcp
    - protocol: udp
  action: Block
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: aa-capability
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  capabilities:
    matchCapabilities:
    - capability: chown
  action: Block
---
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: aa-audit
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  file:
    matchPaths:
    - path: /tmp/audited
  action: Audit
YAML
echo a >/tmp/audited
touch /tmp/owned

kubearmor --lsm apparmor --policyDir /tmp/pol --logPath /tmp/alerts.json >/tmp/agent.log 2>&1 &
agent=$!
i=0
until grep -q 'kubearmor ready' /tmp/agent.log; do
  i=$((i + 1)); [ $i -gt 300 ] && break; sleep 0.2
done
check "agent is ready" grep -q 'kubearmor ready' /tmp/agent.log
check "agent chose AppArmor" grep -q 'enforcer chosen.*enforcer=AppArmor' /tmp/agent.log
check "host profile loaded in enforce mode" grep -q '^kubearmor-host (enforce)' /sys/kernel/security/apparmor/profiles
check "profile file under /run/kubearmor/apparmor" test -s /run/kubearmor/apparmor/kubearmor-host
check "nothing written to /etc/apparmor.d" sh -c '! grep -rqs kubearmor /etc/apparmor.d'

# Programs started from now on are confined by kubearmor-host.
check "a new shell is confined" sh -c 'grep -q "^kubearmor-host" /proc/self/attr/current'
check "process Block: exec denied" denied sh -c '/opt/blk/busybox true'
check "other programs run" sh -c '/bin/busybox true'
check "file Block: open denied" denied sh -c 'cat /tmp/secret'
check "other files open" sh -c 'cat /etc/hostname'
check "network Block tcp: socket denied" denied sh -c 'nc 127.0.0.1 1 </dev/null'
check "network Block udp: socket denied" denied sh -c 'nslookup localhost 127.0.0.1'
check "capability Block chown: chown denied" sh -c '! chown 65534 /tmp/owned 2>/dev/null'
check "file Audit: open allowed" sh -c 'cat /tmp/audited'
# Limit (documented): a process that was running before the profiles were
# loaded (this script's shell) keeps its confinement, so its own exec is not
# mediated; the program it starts is confined from then on.
check "limit: an exec by an older unconfined process is not mediated" /opt/blk/busybox true

sleep 1 # let the agent read the last audit records
check "alert for the process rule" alert aa-process '"Resource":"/opt/blk/busybox"'
check "alert for the file rule" alert aa-file '"Resource":"/tmp/secret"'
check "alert for the tcp rule" alert aa-network 'protocol=TCP'
check "alert for the udp rule" alert aa-network 'protocol=UDP'
check "alert for the capability rule" alert aa-capability '"Resource":"CAP_CHOWN"'
check "audit alert for the Audit rule" sh -c 'grep "\"PolicyName\":\"aa-audit\"" /tmp/alerts.json | grep "\"Enforcer\":\"AppArmor\"" | grep -q "\"Action\":\"Audit\""'

sh -c 'exec sleep 300' &
confined=$!
sleep 0.2
check "a long-running program is confined" grep -q '^kubearmor-host' /proc/$confined/attr/current

kill -TERM "$agent"
wait "$agent"
check "agent stopped cleanly" grep -q 'enforcer detached' /tmp/agent.log
check "stopping the agent unloads every profile" sh -c '! grep -q "^kubearmor-" /sys/kernel/security/apparmor/profiles'
check "stopping the agent removes the profile files" sh -c '[ -z "$(ls -A /run/kubearmor/apparmor 2>/dev/null)" ]'
check "confined programs are unconfined again" grep -q '^unconfined' /proc/$confined/attr/current
check "the blocked program runs again" sh -c '/opt/blk/busybox true'
check "the blocked file opens again" sh -c 'cat /tmp/secret'
kill "$confined" 2>/dev/null

if [ "$failed" != 0 ]; then
  echo "--- agent log"; cat /tmp/agent.log
  echo "--- alerts"; grep -v "\"Type\":\"HostLog\"" /tmp/alerts.json
  echo "--- kernel"; dmesg | grep "apparmor=" | tail -20
fi
[ "$failed" = 0 ] && echo "apparmor enforcement test passed"
exit "$failed"
