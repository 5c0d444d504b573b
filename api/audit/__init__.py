"""Audit: the hash chains of the decision log and the ledger events, and the ledger's
consistency."""
