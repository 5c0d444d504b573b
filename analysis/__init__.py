"""Offline analysis beside the engine: policy tests (``analysis.policytest``), labelled data
sets (``analysis.datasets``) and back-tests (``analysis.backtest``, run in this process or
on several cores through ``analysis.executor``). Neither HTTP nor persistence: these run a
compiled policy over files."""
