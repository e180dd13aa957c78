#!/bin/sh
# The conformance table (hostpolicy/conformance) against the BPF-LSM tier
# (enforce/bpflsm/conformance_test.go): every case's RuleSet through the kernel
# enforcer's Apply, its operation done by a real process, the verdict and
# rule ID from the enforcer's events. Only the table's declared gaps skip.
# vmtest-build: CGO_ENABLED=0 go test -c -o "$VMTEST_ARTIFACTS/conformance-bpflsm.test" ./enforce/bpflsm
# vmtest: --add $VMTEST_ARTIFACTS/conformance-bpflsm.test --timeout 900
set -e
cd /opt/vmtest
rc=0
./conformance-bpflsm.test -test.run '^TestConformance$' -test.v -test.count=1 >/tmp/conf.out 2>&1 || rc=$?
grep -E '^ *(--- |ok|PASS|FAIL)|conformance_test.go|gap:' /tmp/conf.out
[ "$rc" = 0 ] || { echo "--- full output"; cat /tmp/conf.out; exit 1; }
# Every skip must be a declared gap: a skip for another reason means the
# tier (or a case) did not run here.
skips=$(grep -c -- '--- SKIP' /tmp/conf.out || true)
gaps=$(grep -c ': gap: ' /tmp/conf.out || true)
if [ "$skips" != "$gaps" ]; then echo "unexpected skips: $skips skipped, $gaps declared gaps"; exit 1; fi
echo "$gaps declared gaps skipped"
