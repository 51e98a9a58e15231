"""The store: engine, schema, migrations, the SQLite writer's lock and checkpointer, fast paths."""
