#!/bin/sh
# AppArmor tier, every file operation the BPF-LSM path hooks decide
# (25-bpflsm-fileops.sh): against a recursive Block, a readOnly and an Audit
# directory rule, open, truncate, unlink, rmdir, mkdir, mknod, create,
# symlink, hard link, rename out (of the file and of the protected directory),
# rename over, chmod and chown; the outcome, the alert, and at the end the
# protected content intact. AppArmor mediates each of these by path; a
# rename of a directory above the protected one is refused by the deny on
# each ancestor the profiles carry.
# vmtest: --lsm lockdown,capability,landlock,yama,apparmor --add vmtests/lib/guest.sh --timeout 600
# shellcheck disable=SC2016 # sh -c scripts expand in the child
. /opt/vmtest/guest.sh

for m in block ro audit; do
  mkdir -p /srv/$m/prot/sub /srv/$m/free
  echo data >/srv/$m/prot/secret
  echo evil >/srv/$m/free/evil
done
mkdir -p /etc/kubearmor/policies
for m in block ro audit; do
  action=Block; extra=''
  [ $m = ro ] && extra='
      readOnly: true'
  [ $m = audit ] && action=Audit
  cat >/etc/kubearmor/policies/fileops-$m.yaml <<EOF
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: fileops-$m
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: "*"
  file:
    matchDirectories:
    - dir: /srv/$m/prot/
      recursive: true$extra
  action: $action
EOF
done
start_agent --lsm apparmor --policyDir /etc/kubearmor/policies
check "AppArmor is the enforcer" grep -q 'enforcer chosen.*enforcer=AppArmor' "$AGENT_LOG"

# content_is FILE TEXT: FILE's first line is TEXT (read by this shell).
content_is() { IFS= read -r line <"$1" && [ "$line" = "$2" ]; }

# ops M: the operations, each in its own (confined) shell, on /srv/M.
# Each line: NAME|RESOURCE|COMMAND; a read is marked by NAME "read".
ops() {
  d=/srv/$1
  cat <<EOF
read|$d/prot/secret|cat $d/prot/secret
write|$d/prot/secret|echo x >>$d/prot/secret
truncate|$d/prot/secret|truncate -s 0 $d/prot/secret
unlink|$d/prot/secret|rm -f $d/prot/secret
rmdir|$d/prot/sub|rmdir $d/prot/sub
mkdir|$d/prot/newdir|mkdir $d/prot/newdir
mknod|$d/prot/fifo|mknod $d/prot/fifo p
create|$d/prot/created|touch $d/prot/created
symlink|$d/prot/symlink|ln -s /etc/hostname $d/prot/symlink
link|$d/prot/secret|ln $d/prot/secret $d/free/hardlink
rename-out|$d/prot/secret|mv $d/prot/secret $d/free/moved
rename-dir-out|$d/prot|mv $d/prot $d/free/movedprot
rename-over|$d/prot/secret|mv -f $d/free/evil $d/prot/secret
chmod|$d/prot/secret|chmod 666 $d/prot/secret
chown|$d/prot/secret|chown 65534 $d/prot/secret
EOF
}

# restore M: the fixture again (between Audit operations, which succeed).
restore() {
  d=/srv/$1
  [ -d $d/free/movedprot ] && mv $d/free/movedprot $d/prot
  rm -rf $d/prot/newdir $d/prot/fifo $d/prot/created $d/prot/symlink $d/free/hardlink $d/free/moved
  mkdir -p $d/prot/sub
  echo data >$d/prot/secret
  chmod 644 $d/prot/secret
  chown 0 $d/prot/secret
  echo evil >$d/free/evil
}

for m in block ro audit; do
  echo "== $m"
  ops $m >/tmp/ops.$m
  while IFS='|' read -r name res cmd; do
    if [ $m = audit ]; then
      restore audit
      check "audit: $name is allowed" sh -c "$cmd" </dev/null
      alert "audit: $name alert" '"PolicyName":"fileops-audit"' "\"Resource\":\"$res" '"Action":"Audit"' '"Enforcer":"AppArmor"'
    elif [ $m = ro ] && [ "$name" = read ]; then
      check "ro: read is allowed" sh -c "$cmd" </dev/null
    else
      denied "$m: $name is refused" "ermission denied" sh -c "$cmd" </dev/null
      alert "$m: $name alert" "\"PolicyName\":\"fileops-$m\"" "\"Resource\":\"$res" '"Action":"Block"' \
        '"Result":"Permission denied"' '"Enforcer":"AppArmor"'
    fi
  done </tmp/ops.$m
  if [ $m != audit ]; then
    d=/srv/$m
    # read by this script's own shell, which started unconfined: a
    # confined cat would be refused by the Block rule
    check "$m: protected content intact" content_is $d/prot/secret data
    check "$m: protected mode and owner intact" sh -c "[ \"\$(stat -c %a:%u:%h $d/prot/secret)\" = 644:0:1 ]"
    check "$m: nothing got an unprotected name" sh -c "! ls $d/free/hardlink $d/free/moved $d/free/movedprot 2>/dev/null"
    check "$m: nothing was created inside" sh -c "! ls $d/prot/newdir $d/prot/fifo $d/prot/created $d/prot/symlink 2>/dev/null"
  fi
done

# A directory above a protected one (/srv/M, /srv): AppArmor decides a
# rename by the renamed path alone, so the profiles deny write on each
# existing ancestor (ancestorLines in render.go). Moving it away is
# refused; creating, writing and removing files beside the protected ones,
# and making directories there, still work.
for m in block ro; do
  denied "$m: rename of the directory above is refused" "ermission denied" sh -c "mv /srv/$m /srv/$m-moved" </dev/null
  alert "$m: ancestor rename alert" "\"PolicyName\":\"fileops-$m\"" "\"Resource\":\"/srv/$m/" '"Action":"Block"' \
    '"Result":"Permission denied"' '"Enforcer":"AppArmor"'
  check "$m: the tree stayed" sh -c "[ -d /srv/$m/prot ] && ! [ -e /srv/$m-moved ]"
  check "$m: files beside the protected ones" sh -c "echo new >/srv/$m/free/new && echo n >/srv/$m/beside && rm /srv/$m/free/new /srv/$m/beside && mkdir /srv/$m/free/d && rmdir /srv/$m/free/d" </dev/null
done
denied "rename of /srv is refused" "ermission denied" sh -c "mv /srv /srv-moved" </dev/null
restore audit
check "audit: rename of the directory above is allowed" sh -c "mv /srv/audit /srv/audit-moved && mv /srv/audit-moved /srv/audit" </dev/null
alert "audit: ancestor rename alert" '"PolicyName":"fileops-audit"' '"Resource":"/srv/audit/' '"Action":"Audit"' '"Enforcer":"AppArmor"'
check "block: protected content intact at the end" content_is /srv/block/prot/secret data

stop_agent
finish
