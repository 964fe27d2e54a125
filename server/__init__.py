"""server: the gRPC transport of loyalty-core (servicers, the guard every RPC runs in, health, metrics, CLI)."""
