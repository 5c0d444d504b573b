"""The shared core of the service: settings, database and locks, auth, request bodies,
problem details, routing table, middleware, metrics, logs, migrations."""
