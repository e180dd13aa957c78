#!/usr/bin/env bash
# Host side of vmtests/55-package-upgrade-*.sh: two .deb packages of this
# tree (1.0.0 and 1.0.1, as scripts/package builds them), each unpacked for
# the guest as dpkg would see it: root/ (the data) and control/ (conffiles,
# maintainer scripts). Usage: package-build.sh OUTDIR
set -euo pipefail
out=$1
for v in 1.0.0 1.0.1; do
	mkdir -p "$out/build"
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$v" -o "$out/build/kubearmor-$v" ./cmd/kubearmor
	deb=$(scripts/package -o "$out/build" -v "$v" -b "$out/build/kubearmor-$v" | grep '\.deb$')
	rm -rf "$out/pkg/$v"
	mkdir -p "$out/pkg/$v"
	dpkg-deb -x "$deb" "$out/pkg/$v/root"
	dpkg-deb -e "$deb" "$out/pkg/$v/control"
done
rm -rf "$out/build"
