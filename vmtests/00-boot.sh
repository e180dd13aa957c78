#!/bin/sh
# Smoke test of the test VM itself: the guest that every other VM test relies on.
# vmtest: --add vmtests/testdata --add vmtests/00-boot.sh
set -u
failed=0
check() { # check DESCRIPTION COMMAND...: run COMMAND, report, remember a failure
  desc=$1; shift
  if "$@" >/dev/null 2>&1; then echo "ok   $desc"; else echo "FAIL $desc"; failed=1; fi
}
mounted() { # mounted DIR FSTYPE
  awk -v d="$1" -v t="$2" '$2 == d && $3 == t { found = 1 } END { exit !found }' /proc/mounts
}

echo "lsm: $(cat /sys/kernel/security/lsm)"
check "bpf is an active LSM" grep -qw bpf /sys/kernel/security/lsm
check "apparmor is an active LSM" grep -qw apparmor /sys/kernel/security/lsm
check "apparmor securityfs is there" test -d /sys/kernel/security/apparmor

check "proc on /proc" mounted /proc proc
check "sysfs on /sys" mounted /sys sysfs
check "devtmpfs on /dev" mounted /dev devtmpfs
check "securityfs on /sys/kernel/security" mounted /sys/kernel/security securityfs
check "bpffs on /sys/fs/bpf" mounted /sys/fs/bpf bpf
check "tracefs on /sys/kernel/tracing" mounted /sys/kernel/tracing tracefs
check "tmpfs on /tmp" mounted /tmp tmpfs
check "tracefs has tracepoint ids" test -r /sys/kernel/tracing/events/syscalls/sys_enter_openat/id
check "/sys/kernel/btf/vmlinux exists" test -r /sys/kernel/btf/vmlinux

check "/etc/kubearmor/policies is an empty directory" sh -c '[ -d /etc/kubearmor/policies ] && [ -z "$(ls -A /etc/kubearmor/policies)" ]'
check "hostname is vmtest" test "$(hostname)" = vmtest
check "loopback is up" sh -c 'ip link show lo | grep -q "UP"'
check "running as root" test "$(id -u)" = 0
check "cwd is /opt/vmtest" test "$(pwd)" = /opt/vmtest

check "/usr/bin/kubearmor is executable" test -x /usr/bin/kubearmor
check "kubearmor --help exits 0" /usr/bin/kubearmor --help

check "--add file arrived" cmp /opt/vmtest/00-boot.sh "$0"
check "--add directory arrived" grep -q 'directory fixture' /opt/vmtest/testdata/hello.txt

check "nobody resolves to 65534" test "$(su -s /bin/sh nobody -c 'id -u')" = 65534
check "setpriv drops to nobody" test "$(/usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups /bin/id -u)" = 65534
check "an exec'd applet keeps its own path" test "$(/bin/readlink /proc/self/exe)" = /bin/readlink

check "apparmor_parser compiles a profile" sh -c \
  'printf "profile vmtest-smoke {\n  /bin/** rix,\n}\n" >/tmp/p && /sbin/apparmor_parser -Q -K /tmp/p'
check "apparmor_parser loads a profile into the kernel" sh -c \
  '/sbin/apparmor_parser -r -K /tmp/p && grep -q "vmtest-smoke (enforce)" /sys/kernel/security/apparmor/profiles'

[ "$failed" = 0 ] && echo "boot smoke test passed"
exit "$failed"
