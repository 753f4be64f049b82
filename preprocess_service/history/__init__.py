"""The history of analyses: every answer stored (SQLAlchemy 2, Alembic migrations), queried by the
``/analyses`` and ``/stats`` routes, and used as a cache: a file already analyzed by the same model
is answered from here without recomputing. SQLite by default, PostgreSQL by URL in a cluster."""
