"""Trust: API keys, rights, limits, TLS and the SRE metrics."""
