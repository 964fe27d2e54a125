"""gRPC servicers: protobuf to the domain's request types and back, nothing else."""
