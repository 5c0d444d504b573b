"""Exchange rates into the policy currency and the conversion of orders in other
currencies."""
