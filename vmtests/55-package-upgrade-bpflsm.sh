#!/bin/sh
# Issue 21, the packaging part in the VM: the built .deb installed, upgraded
# to another build and removed with its own maintainer scripts, BPF-LSM
# tier, while a loop tries a blocked exec and a blocked open (no systemd in
# the guest: see vmtests/lib/package-upgrade.sh for what is done by hand).
# vmtest-build: vmtests/lib/package-build.sh "$VMTEST_ARTIFACTS"
# vmtest: --add vmtests/lib/guest.sh --add vmtests/lib/package-upgrade.sh --add $VMTEST_ARTIFACTS/pkg --timeout 900
. /opt/vmtest/guest.sh
. /opt/vmtest/package-upgrade.sh
WAIT_SECS=240
run_package_upgrade
check "the tier was BPF-LSM" grep -q 'enforcer chosen.*enforcer=BPFLSM' "$AGENT_LOG"
finish
