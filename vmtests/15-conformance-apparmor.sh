#!/bin/sh
# The conformance table (hostpolicy/conformance) against the AppArmor tier
# (enforce/apparmor/conformance_test.go), on a kernel with AppArmor and no
# BPF-LSM: every case's RuleSet loaded as profiles through Apply, its
# operation done by a real process started under them, the verdict and rule
# ID from the audit records as the tier attributes them. Only the table's
# declared gaps skip. Then TestAllowListProgramsStart: a dynamically linked
# program (setpriv) starts and runs under a file allow-list with block posture.
# vmtest-build: CGO_ENABLED=0 go test -c -o "$VMTEST_ARTIFACTS/conformance-apparmor.test" ./enforce/apparmor
# vmtest: --lsm lockdown,capability,landlock,yama,apparmor --add $VMTEST_ARTIFACTS/conformance-apparmor.test --timeout 900
set -e
cd /opt/vmtest
rc=0
./conformance-apparmor.test -test.run '^(TestConformance|TestAllowListProgramsStart)$' -test.v -test.count=1 >/tmp/conf.out 2>&1 || rc=$?
grep -E '^ *(--- |ok|PASS|FAIL)|conformance_test.go|gap:' /tmp/conf.out
[ "$rc" = 0 ] || { echo "--- full output"; cat /tmp/conf.out; exit 1; }
# Every skip must be a declared gap: a skip for another reason means the
# tier (or a case) did not run here.
skips=$(grep -c -- '--- SKIP' /tmp/conf.out || true)
gaps=$(grep -c ': gap: ' /tmp/conf.out || true)
if [ "$skips" != "$gaps" ]; then echo "unexpected skips: $skips skipped, $gaps declared gaps"; exit 1; fi
echo "$gaps declared gaps skipped"
