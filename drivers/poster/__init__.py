"""Poster POS: the platform app inside the till and the account's webhooks (plain metadata; see README.md)."""

NAME = "poster"
TITLE = "Poster POS (platform app + account webhooks)"
SHAPE = "push"  # routes under /v1/poster/; no poll loop
CALLED_BY = "cloud"  # Poster's account webhooks come from its cloud (the app calls from the terminal)
DELIVERY = "at-least-once from the app's local queue and Poster's webhook retries; applied once by key"
