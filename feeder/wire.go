package feeder

import (
	"fmt"
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// outgoing is one published alert or log together with its wire encoding,
// made once on first use and shared by every gRPC subscriber: with 50
// watchers the agent marshals an alert once, not 50 times.
type outgoing[T proto.Message] struct {
	msg  T
	once sync.Once
	wire preEncoded
	err  error
}

func newOutgoing[T proto.Message](m T) *outgoing[T] { return &outgoing[T]{msg: m} }

func (o *outgoing[T]) encoded() (*preEncoded, error) {
	o.once.Do(func() {
		b, err := proto.Marshal(o.msg)
		if err != nil {
			o.err = fmt.Errorf("feeder: encode %T: %w", o.msg, err)
			return
		}
		o.wire = preEncoded(b)
	})
	return &o.wire, o.err
}

// preEncoded is a message already in protobuf wire format.
type preEncoded []byte

// wireCodec is gRPC's proto codec, except that it sends a preEncoded value
// as it is. It keeps the name "proto", so clients see no difference.
type wireCodec struct{ proto encoding.CodecV2 }

func newWireCodec() wireCodec { return wireCodec{proto: encoding.GetCodecV2("proto")} }

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if p, ok := v.(*preEncoded); ok {
		// SliceBuffer is never returned to a pool, so sharing it between
		// streams is safe.
		return mem.BufferSlice{mem.SliceBuffer(*p)}, nil
	}
	return c.proto.Marshal(v)
}

func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (c wireCodec) Name() string { return "proto" }
