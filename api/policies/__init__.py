"""Policy texts: every policy that made a decision, stored verbatim; the policy in force;
compiled versions by sha256 for replay."""
