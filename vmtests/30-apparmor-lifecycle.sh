#!/bin/sh
# AppArmor tier: fromSource and readOnly rules, a live policy change, an agent
# killed with SIGKILL from a confined shell (KubeArmor #246), and the next
# agent adopting the profiles the killed one left loaded and removing the one
# its rules no longer need (KubeArmor #409).
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
wait_log() { # wait_log FILE TEXT
  i=0
  until grep -q "$2" "$1" 2>/dev/null; do
    i=$((i + 1)); [ "$i" -gt 300 ] && return 1; sleep 0.2
  done
}
start_agent() { # start_agent LOG: runs the agent in the background, sets $agent
  kubearmor --lsm apparmor --policyDir /tmp/pol --logPath /tmp/alerts.json >"$1" 2>&1 &
  agent=$!
  wait_log "$1" 'kubearmor ready'
}
doc() { # doc NAME SPEC-BODY
  printf 'apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: %s\nspec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: "*"\n%s\n' "$1" "$2"
}

mkdir -p /tmp/pol /opt/src
cp /bin/busybox /opt/src/busybox
echo s >/tmp/by-source
echo r >/tmp/readonly
doc aa-source '  file:
    matchPaths:
    - path: /tmp/by-source
      fromSource:
      - path: /opt/src/busybox
  action: Block' >/tmp/pol/source.yaml
doc aa-readonly '  file:
    matchPaths:
    - path: /tmp/readonly
      readOnly: true
  action: Block' >/tmp/pol/readonly.yaml

check "agent is ready" start_agent /tmp/agent1.log
check "fromSource profile loaded" grep -q '^kubearmor-src-opt-src-busybox (enforce)' /sys/kernel/security/apparmor/profiles
check "fromSource: the source program is denied" denied sh -c '/opt/src/busybox cat /tmp/by-source'
check "fromSource: other programs read the file" sh -c 'cat /tmp/by-source'
check "readOnly: reads pass" sh -c 'cat /tmp/readonly'
check "readOnly: writes are denied" denied sh -c 'echo x >>/tmp/readonly'
sleep 1
check "fromSource alert" sh -c 'grep "\"PolicyName\":\"aa-source\"" /tmp/alerts.json | grep -q "\"Enforcer\":\"AppArmor\""'
check "readOnly alert" sh -c 'grep "\"PolicyName\":\"aa-readonly\"" /tmp/alerts.json | grep -q "\"Action\":\"Block\""'

# A live policy change: the readOnly policy goes away, the fromSource profile stays.
rm /tmp/pol/readonly.yaml
i=0
until sh -c 'echo x >>/tmp/readonly' 2>/dev/null; do
  i=$((i + 1)); [ $i -gt 100 ] && break; sleep 0.2
done
check "removing a policy lifts its rule" sh -c 'echo y >>/tmp/readonly'
check "the other policy still holds" denied sh -c '/opt/src/busybox cat /tmp/by-source'

# SIGKILL from a confined shell must work (the host profile allows signals).
check "a confined shell can SIGKILL the agent" sh -c "kill -9 $agent"
wait "$agent" 2>/dev/null
check "profiles of a killed agent stay loaded until the next start" grep -q '^kubearmor-host' /sys/kernel/security/apparmor/profiles
rm /tmp/pol/source.yaml
check "a new agent starts" start_agent /tmp/agent2.log
check "the new agent is not confined by the stale host profile" sh -c "! grep -q '^kubearmor-host' /proc/$agent/attr/current"
check "it adopted the loaded profiles and removed the stale one" grep -q 'adopted [0-9]* AppArmor profiles an earlier agent left loaded: .* 1 removed' /tmp/agent2.log
check "no stale fromSource profile" sh -c '! grep -q "^kubearmor-src-" /sys/kernel/security/apparmor/profiles'
check "the stale rule is gone" sh -c '/opt/src/busybox cat /tmp/by-source'
kill -TERM "$agent"; wait "$agent"
check "stopping the agent unloads every profile" sh -c '! grep -q "^kubearmor-" /sys/kernel/security/apparmor/profiles'

if [ "$failed" != 0 ]; then
  for f in /tmp/agent1.log /tmp/agent2.log; do echo "--- $f"; cat "$f"; done
  echo "--- alerts"; grep -v '"Type":"HostLog"' /tmp/alerts.json
  echo "--- kernel"; dmesg | grep "apparmor=" | tail -20
fi
[ "$failed" = 0 ] && echo "apparmor lifecycle test passed"
exit "$failed"
