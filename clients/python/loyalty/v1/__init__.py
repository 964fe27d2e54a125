"""loyalty.v1: stubs generated from protos/loyalty/v1/*.proto (never edited, never committed)."""
