"""The ledger and checkout flow over real gRPC against the real PostgreSQL."""
