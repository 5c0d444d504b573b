"""Customers: each customer's credit position (credit limit, receivables, days past due,
profile facts); the CSV import."""
