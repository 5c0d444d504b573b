"""The exposure ledger: ledger events (order cancelled, invoice issued, payment received,
credit note) and the reservations of approved orders."""
