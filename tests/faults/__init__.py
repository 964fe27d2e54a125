"""Faults survived: killed servers, database restarts, contention, malformed requests, the model."""
