"""loyalty: the generated gRPC client of loyalty-core and its thin typed wrapper."""
