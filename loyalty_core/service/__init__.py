"""Use cases: one database transaction each, arithmetic by loyalty_core.calc, SQL by loyalty_core.store."""
