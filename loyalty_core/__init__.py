"""loyalty-core: the domain of a points-and-discounts engine (no gRPC, no protobuf here)."""
