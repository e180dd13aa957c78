#!/bin/sh
# The BPF-LSM enforcer's kernel tests (enforce/bpflsm/*_test.go), run in the guest:
# every rule kind denied or allowed by the real kernel, with its event; and
# what the open hook costs per path (TestGateCost, BPFLSM_COST=1).
# vmtest-build: CGO_ENABLED=0 go test -c -o "$VMTEST_ARTIFACTS/bpflsm.test" ./enforce/bpflsm
# vmtest: --add $VMTEST_ARTIFACTS/bpflsm.test --timeout 900
set -e
cd /opt/vmtest
BPFLSM_COST=1 ./bpflsm.test -test.v -test.count=1 > /tmp/bpflsm.out 2>&1 || { cat /tmp/bpflsm.out; exit 1; }
grep -E '^(--- |ok|PASS|FAIL)|ns per run' /tmp/bpflsm.out
# The kernel tests skip when BPF-LSM is missing; here it must not be.
if grep -q -- '--- SKIP' /tmp/bpflsm.out; then echo "unexpected skips"; grep -A2 -- '--- SKIP' /tmp/bpflsm.out; exit 1; fi
