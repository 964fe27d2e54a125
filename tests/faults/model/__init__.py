"""The executable model of docs/spec.md: ``rules`` states the rules as plain Python (no gRPC, no
database), ``machine`` drives the real server and the rules side by side and compares every answer."""
