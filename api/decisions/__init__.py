"""Decisions: decide an order (approve / refer / decline) and record it in the hash-chained
decision log; read, list, export and replay the log."""
