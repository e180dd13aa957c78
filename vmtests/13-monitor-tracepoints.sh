#!/bin/sh
# The monitor's kernel tests (monitor/*_test.go) in the guest on the
# syscall tracepoint path (MONITOR_TEST_HOOKS=tracepoints), the one the
# agent falls back to where the kernel refuses trampolines: its programs
# (sys_exit_*, kretprobes, sched_*) load and report on the guest's kernel,
# not only on the host's. The path walks are global BPF functions, which
# each kernel verifies on its own terms. The 32-bit syscalls are the fexit
# path's alone (TestCompat32 and TestHooks say so and skip that part).
# vmtest-build: CGO_ENABLED=0 go test -c -o "$VMTEST_ARTIFACTS/monitor-tp.test" ./monitor
# vmtest: --add $VMTEST_ARTIFACTS/monitor-tp.test --timeout 900
set -e
cd /opt/vmtest
export MONITOR_TEST_HOOKS=tracepoints
./monitor-tp.test -test.v -test.count=1 > /tmp/monitor.out 2>&1 || { cat /tmp/monitor.out; exit 1; }
grep -E '^(--- |ok|PASS|FAIL)|hooks' /tmp/monitor.out
grep -q -- '--- PASS: TestExecPathWalk' /tmp/monitor.out || { echo "TestExecPathWalk did not pass"; exit 1; }
