"""The persistence of one database, domain by domain: ``Store(database_url)`` holds the
``Database`` (engine, transactions, locks; ``api.core.database``) and one repository per
domain, each in its own package:

===================  ======================================  ==============================
attribute            what                                    module
===================  ======================================  ==============================
``decisions``        decide and record; read the log         ``api.decisions.persistence``
``customers``        credit positions; CSV import            ``api.customers.persistence``
``ledger``           ledger events; reservations             ``api.ledger.persistence``
``fx``               exchange rates                          ``api.fx.persistence``
``keys``             API keys                                ``api.keys.persistence``
``policies``         stored policy texts                     ``api.policies.persistence``
``audit``            hash chains and ledger consistency      ``api.audit.persistence``
``orders``           an order read from the log and ledger   ``api.orders.persistence``
===================  ======================================  ==============================
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from api.audit.persistence import Audit
from api.core.database import Database
from api.customers.history import History
from api.customers.persistence import Customers
from api.decisions.persistence import Decisions
from api.fx.persistence import FxRates
from api.keys.persistence import ApiKeys
from api.ledger.persistence import Ledger
from api.orders.persistence import Orders
from api.policies.persistence import PolicyTexts

__all__ = ["Store"]


class Store:
    """Every domain's persistence over one database (see the module docstring)."""

    def __init__(self, database_url: str, *, clock: Any = None):
        self.db = Database(database_url, clock=clock)
        self.decisions = Decisions(self.db)
        self.customers = Customers(self.db)
        self.customer_history = History(self.db)
        self.ledger = Ledger(self.db)
        self.fx = FxRates(self.db)
        self.keys = ApiKeys(self.db)
        self.policies = PolicyTexts(self.db)
        self.audit = Audit(self.db)
        self.orders = Orders(self.db)

    @property
    def engine(self) -> sa.Engine:
        return self.db.engine

    @engine.setter
    def engine(self, engine: sa.Engine) -> None:  # tests point a store at a broken database
        self.db.engine = engine

    @property
    def dialect(self) -> str:
        return self.db.dialect

    @property
    def url(self) -> str:
        return self.db.url

    def upgrade(self) -> tuple[str | None, str | None]:
        """Apply the database migrations; ``(revision before, after)``."""
        return self.db.upgrade()

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers."""
        self.db.ping()

    def dispose(self) -> None:
        self.db.dispose()
