"""API keys: create, list, revoke; the role of a presented key."""
