package fanotify

// The cgroup socket programs are committed as bpf2go output; regenerate with
// `go generate ./enforce/fanotify` (clang 14 and llvm-strip). The C source
// lives in c/ because a Go package directory may not hold .c files when cgo
// is off.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -type event -type net_key -type rule_val -type config -type key_kind -type hook -type verdict -type slot sock c/sock.bpf.c -- -I../../bpf/include -O2 -g -Wall -Werror
