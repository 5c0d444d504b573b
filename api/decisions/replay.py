"""Replay: differences between a stored decision and its re-evaluation."""

from __future__ import annotations

from typing import Any

__all__ = ["differences"]


def differences(stored: Any, replayed: Any, path: str = "") -> list[dict[str, Any]]:
    """Every leaf where two JSON values differ: ``[{path, stored, replayed}]``."""
    if isinstance(stored, dict) and isinstance(replayed, dict):
        out = []
        for key in sorted(set(stored) | set(replayed), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in stored:
                out.append({"path": sub, "stored": None, "replayed": replayed[key]})
            elif key not in replayed:
                out.append({"path": sub, "stored": stored[key], "replayed": None})
            else:
                out.extend(differences(stored[key], replayed[key], sub))
        return out
    if isinstance(stored, list) and isinstance(replayed, list) and len(stored) == len(replayed):
        out = []
        for i, (a, b) in enumerate(zip(stored, replayed, strict=True)):
            out.extend(differences(a, b, f"{path}[{i}]"))
        return out
    if stored != replayed:
        return [{"path": path, "stored": stored, "replayed": replayed}]
    return []
