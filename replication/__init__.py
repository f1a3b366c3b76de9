"""PostgreSQL under Patroni behind HAProxy: clients, schema and the campaign store."""
