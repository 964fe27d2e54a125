"""server: the gRPC transport of loyalty-core (servicers, interceptors, health, metrics, CLI)."""
