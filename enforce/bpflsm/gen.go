package bpflsm

// The BPF objects are committed; regenerate them with `go generate ./enforce/bpflsm`
// (clang 14 and llvm-strip; the output is byte-identical for the same clang).
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 -type event -type path_key -type net_key -type rule_val -type rule_slot -type src_key -type src_val -type pattern -type pattern_key -type config -type rate_key -type rate_val -type scope_key -type inode_tag -type name_filter -type layout -type scope_by -type key_kind -type slot -type rule_flag -type category -type verdict -type hook -type tok -type pattern_sel -type counter enforcer c/enforcer.bpf.c -- -I../../bpf/include -Ic -O2 -g -Wall -Werror
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 probe c/probe.bpf.c -- -I../../bpf/include -O2 -g -Wall -Werror
