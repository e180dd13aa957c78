#!/bin/sh
# The monitor's kernel tests (monitor/*_test.go) in the guest, whose kernel
# accepts trampolines: the fexit path is forced (MONITOR_TEST_HOOKS=fexit,
# TestHooks asserts it), every scope reports its events through it, and
# syscalls made through the 32-bit entry (int 0x80, socketcall) are reported
# (TestCompat32, with the GOARCH=386 helper). Then the program costs
# (TestProgramCost, a tenth of the host's iterations). The guest is its own
# machine, so TestTimestampsFollowClockStep steps its wall clock for real.
# vmtest-build: CGO_ENABLED=0 go test -c -o "$VMTEST_ARTIFACTS/monitor.test" ./monitor && GOARCH=386 CGO_ENABLED=0 go build -o "$VMTEST_ARTIFACTS/compat32" ./monitor/testdata/compat32
# vmtest: --add $VMTEST_ARTIFACTS/monitor.test --add $VMTEST_ARTIFACTS/compat32 --timeout 900
set -e
cd /opt/vmtest
export MONITOR_TEST_HOOKS=fexit MONITOR_TEST_COMPAT32=/opt/vmtest/compat32 MONITOR_TEST_STEP_CLOCK=1
./monitor.test -test.v -test.count=1 > /tmp/monitor.out 2>&1 || { cat /tmp/monitor.out; exit 1; }
grep -E '^(--- |ok|PASS|FAIL)|hooks' /tmp/monitor.out
# The kernel tests skip without BPF or root; here nothing may skip but the
# benchmarks, which need MONITOR_BENCH, and TestVerifierCost, whose bound is
# for kernels from 6.13 (the host's stage runs it).
if grep -- '--- SKIP' /tmp/monitor.out | grep -vE 'TestOverhead|TestProgramCost|TestVerifierCost'; then echo "unexpected skips"; exit 1; fi
grep -q -- '--- PASS: TestCompat32' /tmp/monitor.out || { echo "TestCompat32 did not pass"; exit 1; }
MONITOR_BENCH=quick ./monitor.test -test.v -test.count=1 -test.run 'TestProgramCost' 2>&1 | grep -vE '^=== '
