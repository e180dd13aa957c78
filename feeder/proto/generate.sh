#!/usr/bin/env bash
# Regenerates feeder/{kubearmorpb,policypb,statuspb} from feeder/proto with
# pinned plugin versions, so CI can regenerate and diff. protoc itself and
# google/protobuf/empty.proto come from Debian (protobuf-compiler,
# libprotobuf-dev).
set -euo pipefail
cd "$(dirname "$0")"
PROTOC_GEN_GO=v1.36.12       # = google.golang.org/protobuf in go.mod
PROTOC_GEN_GO_GRPC=v1.6.2    # generated code needs grpc >= 1.64 (go.mod has newer)
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
GOFLAGS= GOBIN="$bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO"
GOFLAGS= GOBIN="$bin" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC"
include=/usr/include
[ -f "$include/google/protobuf/empty.proto" ] || { echo "missing $include/google/protobuf/empty.proto (apt-get install libprotobuf-dev)" >&2; exit 1; }
for p in kubearmor policy status; do
  out=../${p}pb
  mkdir -p "$out"
  PATH="$bin:$PATH" protoc -I . -I "$include" \
    --go_out="$out" --go_opt=paths=source_relative \
    --go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
    "$p.proto"
done
# Upstream's generated Alert and Log always print PPID and UID in JSON (its
# Makefile strips omitempty from those two tags); karmor --json shows them
# even when 0, and our JSON-lines exporter must print the same bytes.
sed -i -e 's/json:"PPID,omitempty"/json:"PPID"/' -e 's/json:"UID,omitempty"/json:"UID"/' ../kubearmorpb/kubearmor.pb.go
gofmt -l ../kubearmorpb ../policypb ../statuspb | (! grep .)
