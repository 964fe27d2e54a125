"""Schema migrations: NNNN_name.sql files applied in order by loyalty_core.store.migrate."""
