"""Fixtures and helpers shared by test modules in several folders (no tests here).

Two fixtures of one name do different things in different helpers (``api`` in
sqlite_api.py and ledger.py; ``store``, ``compiled`` and ``pg_url`` in stores.py and
ledger.py), so they are not in a conftest.py: a test module takes the ones it uses by
assigning them, e.g. ``api = sqlite_api.api``, and pytest finds them under those names.
"""
