#!/bin/sh
# The agent end to end with BPF-LSM: policy files in /etc/kubearmor/policies,
# real operations denied (or allowed) by the kernel, and the alerts in the
# agent's JSON lines output with KubeArmor's fields.
# vmtest: --add vmtests/lib/guest.sh --timeout 600
. /opt/vmtest/guest.sh

# Test programs are copies of busybox, so rules on them touch nothing else.
# busybox picks the applet by file name, so each copy is named for its applet
# and lives in a directory named for its role.
mkdir -p /srv/data/sub
for p in blocked/true other/true writer/true shell/sh net/nc named/sleep pat/apt-get pat/apt-cache pat2/dpkg ping/ping; do
  mkdir -p /tmp/${p%/*}; cp /bin/busybox /tmp/$p
done
echo secret > /srv/data/secret.txt
echo deep > /srv/data/sub/deep.txt
echo hello > /srv/data/hello.txt

cat > /etc/kubearmor/kubearmor.yaml <<'EOF'
cluster: vmtest
hostDefaultFilePosture: block
EOF
start_agent
check "BPF-LSM is the enforcer" grep -q 'enforcer chosen.*enforcer=BPFLSM' "$AGENT_LOG"

echo "== process: block by path, with severity/tags/message"
policy block-exec <<'EOF'
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: block-exec
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  severity: 5
  tags: [test, exec]
  message: blocked binary
  process:
    matchPaths:
    - path: /tmp/blocked/true
  action: Block
EOF
denied "exec of a blocked path is refused" "Permission denied" /tmp/blocked/true true
check "exec of another copy still works" /tmp/other/true true
alert "Block alert for the exec" '"PolicyName":"block-exec"' '"Severity":"5"' '"Tags":"test,exec"' \
  '"Message":"blocked binary"' '"Type":"MatchedHostPolicy"' '"Operation":"Process"' \
  '"Resource":"/tmp/blocked/true' '"Enforcer":"BPFLSM"' '"Action":"Block"' '"Result":"Permission denied"' \
  '"ClusterName":"vmtest"' '"HostName":"vmtest"' '"ProcessName":"/tmp/blocked/true"' '"HostPID":' '"UID":0'

echo "== live edit: blocked -> audited -> blocked, no restart"
changed sed -i 's/action: Block/action: Audit/' /etc/kubearmor/policies/block-exec.yaml
check "after the edit to Audit the exec works" /tmp/blocked/true true
alert "Audit alert after the edit" '"PolicyName":"block-exec"' '"Action":"Audit"' '"Result":"Passed"' '"Enforcer":"BPFLSM"'
changed sed -i 's/action: Audit/action: Block/' /etc/kubearmor/policies/block-exec.yaml
denied "after the edit back to Block the exec is refused again" "Permission denied" /tmp/blocked/true true
changed rm /etc/kubearmor/policies/block-exec.yaml
check "after the delete the exec works" /tmp/blocked/true true

echo "== process started before the policy is covered"
/tmp/shell/sh -c 'sleep 3; /tmp/blocked/true true' > /tmp/early.out 2>&1 &
early=$!
policy block-exec-2 <<'EOF'
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: block-exec-2
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  process:
    matchDirectories:
    - dir: /tmp/blocked/
  action: Block
EOF
wait $early
if grep -q "Permission denied" /tmp/early.out; then pass "a shell started before the policy is denied too"; else fail "early shell was not denied"; cat /tmp/early.out; fi
changed rm /etc/kubearmor/policies/block-exec-2.yaml

echo "== process: execname, patterns, recursive directories"
mkdir -p /tmp/tree/a/b && cp /bin/busybox /tmp/tree/a/b/true && cp /bin/busybox /tmp/tree/true
policy proc-kinds <<'EOF2'
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: proc-kinds
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: vmtest
  process:
    matchPaths:
    - execname: sleep
    matchPatterns:
    - pattern: /tmp/pat/apt*
    matchDirectories:
    - dir: /tmp/tree/
  action: Block
EOF2
denied "execname: any file named sleep" "Permission denied" /tmp/named/sleep 0
denied "pattern /tmp/pat/apt* (apt-get)" "Permission denied" /tmp/pat/apt-get
denied "pattern /tmp/pat/apt* (apt-cache)" "Permission denied" /tmp/pat/apt-cache
check "pattern does not match /tmp/pat2/dpkg" /tmp/pat2/dpkg --help
denied "non-recursive dir: a file directly in it" "Permission denied" /tmp/tree/true
check "non-recursive dir: a file below a subdirectory" /tmp/tree/a/b/true
changed sed -i 's#    - dir: /tmp/tree/#    - dir: /tmp/tree/\n      recursive: true#' /etc/kubearmor/policies/proc-kinds.yaml
denied "recursive dir: a file below a subdirectory" "Permission denied" /tmp/tree/a/b/true
alert "pattern alert" '"PolicyName":"proc-kinds"' '"Resource":"/tmp/pat/apt-cache' '"Action":"Block"'
changed rm /etc/kubearmor/policies/proc-kinds.yaml

echo "== file: ownerOnly, audit with fromSource"
echo mine > /srv/data/owned.txt; chmod 644 /srv/data/owned.txt
policy owner <<'EOF2'
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: owner
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  file:
    matchPaths:
    - path: /srv/data/owned.txt
      ownerOnly: true
      action: Block
    - path: /srv/data/secret.txt
      fromSource:
      - path: /bin/cat
      action: Audit
EOF2
check "the owner (root) reads an ownerOnly file" /bin/cat /srv/data/owned.txt
denied "another user cannot read an ownerOnly file" "Permission denied" /usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups /bin/cat /srv/data/owned.txt
check "an audited file stays readable" /bin/cat /srv/data/secret.txt
alert "Audit alert with fromSource" '"PolicyName":"owner"' '"Resource":"/srv/data/secret.txt' '"Action":"Audit"' '"Result":"Passed"' '"Enforcer":"BPFLSM"'
alert "ownerOnly alert carries the uid" '"PolicyName":"owner"' '"Resource":"/srv/data/owned.txt' '"UID":65534' '"Action":"Block"'
changed rm /etc/kubearmor/policies/owner.yaml

echo "== capabilities: net_raw blocked for one program"
policy caps <<'EOF2'
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: caps
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  capabilities:
    matchCapabilities:
    - capability: net_raw
      fromSource:
      - path: /tmp/ping/ping
  action: Block
EOF2
denied "raw socket (ping) is refused" "ermi" /tmp/ping/ping -c 1 -W 1 127.0.0.1
alert "capability alert" '"PolicyName":"caps"' '"Operation":"Capabilities"' '"Resource":"CAP_NET_RAW"' '"Action":"Block"'
changed rm /etc/kubearmor/policies/caps.yaml

echo "== file: readOnly, directory recursive vs not, ownerOnly"
policy files <<'EOF'
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: files
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  file:
    matchPaths:
    - path: /srv/data/hello.txt
      readOnly: true
    matchDirectories:
    - dir: /srv/data/sub/
  action: Block
EOF
check "a readOnly file can be read" cat /srv/data/hello.txt
denied "a readOnly file cannot be written" "Permission denied" sh -c 'echo x >> /srv/data/hello.txt'
denied "a file in a blocked directory cannot be read" "Permission denied" cat /srv/data/sub/deep.txt
check "a file next to the blocked directory can be read" cat /srv/data/secret.txt
alert "Block alert for the file" '"PolicyName":"files"' '"Operation":"File"' '"Resource":"/srv/data/sub/deep.txt' '"Action":"Block"' '"Result":"Permission denied"'

echo "== network: tcp blocked for one program (fromSource)"
policy net <<'EOF'
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: net
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  network:
    matchProtocols:
    - protocol: tcp
      fromSource:
      - path: /tmp/net/nc
  action: Block
EOF
denied "tcp from the blocked program is refused" "ermission denied" /tmp/net/nc 127.0.0.1 9
alert "Block alert for the socket" '"PolicyName":"net"' '"Operation":"Network"' '"Action":"Block"' '"Enforcer":"BPFLSM"'

echo "== allow-list with block posture, for one program"
policy allow <<'EOF'
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: allow
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  process:
    matchPaths:
    - path: /tmp/other/true
      fromSource:
      - path: /tmp/shell/sh
  action: Allow
EOF
check "the allowed program runs from the allow-listed shell" /tmp/shell/sh -c '/tmp/other/true true; exit $?'
denied "anything else from that shell is refused (block posture)" "Permission denied" /tmp/shell/sh -c '/tmp/writer/true true; exit $?'
check "other programs are not in allow-list mode" /tmp/writer/true true
alert "DefaultPosture alert" '"PolicyName":"DefaultPosture"' '"Action":"Block"' '"Result":"Permission denied"' '"Resource":"/tmp/writer/true'
no_alert "DefaultPosture alerts carry no severity" '"PolicyName":"DefaultPosture"' '"Severity"'

stop_agent
check "no enforcement after stop" /tmp/blocked/true true
check "no enforcement after stop (files)" cat /srv/data/sub/deep.txt
check "no kubearmor pins left" sh -c '! ls /sys/fs/bpf | grep -q kubearmor'
finish
