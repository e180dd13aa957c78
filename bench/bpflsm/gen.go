package main

// The C sources live in c/ because a Go package directory may not hold .c
// files when cgo is off.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 floorBPF c/floor.bpf.c -- -I../../bpf/include -O2 -g -Wall -Werror
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target amd64 recordBPF c/record.bpf.c -- -I../../bpf/include -O2 -g -Wall -Werror
