// Package proto holds the .proto sources of the feeder's gRPC API; the
// generated Go code lives in ../kubearmorpb, ../policypb and ../statuspb.
package proto

//go:generate bash generate.sh
