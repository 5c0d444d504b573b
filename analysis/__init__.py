"""Offline analysis beside the engine: policy tests (``analysis.policytest``), labelled data
sets (``analysis.datasets``) and back-tests (``analysis.backtest``). Neither HTTP nor
persistence: these run a compiled policy over files."""
