"""PostgreSQL: connection pool, migrations, the embedded server for development."""
