"""A simulated Poster account: the platform app's till events and the account's signed webhooks."""
