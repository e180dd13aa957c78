#!/bin/sh
# Guest side of the BPF-LSM kernel tests: runs the bpflsm test binary in the
# vmtest guest. From the repository root:
#   CGO_ENABLED=0 go test -c -o /tmp/bpflsm.test ./enforce/bpflsm
#   scripts/vmtest --add /tmp/bpflsm.test enforce/bpflsm/vmtest/run.sh
# Extra arguments reach the test binary (e.g. -test.run TestExec).
set -e
cd /opt/vmtest
exec ./bpflsm.test -test.v -test.count=1 "$@"
