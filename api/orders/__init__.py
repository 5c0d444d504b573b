"""Orders: one order's status, figures and timeline, derived from the decision log and the
ledger (no table of their own)."""
