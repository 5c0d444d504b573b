"""Operations: liveness, readiness, Prometheus metrics (no key)."""
