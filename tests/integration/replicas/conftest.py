from tests.pg_fixture import pg_cluster  # noqa: F401  (the session-scoped PostgreSQL cluster)
