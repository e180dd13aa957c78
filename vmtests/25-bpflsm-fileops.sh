#!/bin/sh
# The BPF-LSM path hooks in the guest kernel (enforce/bpflsm/fileops_test.go): open,
# truncate, unlink, rmdir, mkdir, mknod, create, symlink, hard link, rename
# out (of the file and of the protected directory), rename over, chmod and
# chown against Block, readOnly and Audit rules (and, inside a container
# stand-in, a container policy's Block rule), each a real system call
# with its outcome and its alert (lsm=FILE_* in Data, the path in Resource);
# a protected file and a blocked program get no unprotected name, hard
# links made before the rules are decided by the inode's tag
# (TestFileOpsPreexistingLinks), and the protected content is intact at the end.
# vmtest-build: CGO_ENABLED=0 go test -c -o "$VMTEST_ARTIFACTS/bpflsm.test" ./enforce/bpflsm
# vmtest: --add $VMTEST_ARTIFACTS/bpflsm.test --timeout 900
set -e
cd /opt/vmtest
./bpflsm.test -test.v -test.count=1 -test.run 'TestFileOps' > /tmp/fileops.out 2>&1 || { cat /tmp/fileops.out; exit 1; }
grep -E '^( *--- |ok|PASS|FAIL)' /tmp/fileops.out
if grep -q -- '--- SKIP' /tmp/fileops.out; then echo "unexpected skips"; grep -A2 -- '--- SKIP' /tmp/fileops.out; exit 1; fi
for t in 'TestFileOpsDirectory/readonly' 'TestFileOpsPreexistingLinks'; do
  if ! grep -q -- "--- PASS: $t" /tmp/fileops.out; then echo "the file-operation tests did not run ($t)"; exit 1; fi
done
