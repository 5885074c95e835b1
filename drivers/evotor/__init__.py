"""Evotor smart tills: on-terminal plugin events and Evotor cloud webhooks (plain metadata; see README.md)."""

NAME = "evotor"
TITLE = "Evotor (terminal plugin + cloud webhooks)"
SHAPE = "push"  # routes under /v1/evotor/; no poll loop
CALLED_BY = "cloud"  # Evotor cloud webhooks come from the internet (the plugin calls from the terminal)
DELIVERY = "at-least-once from the plugin and the cloud; applied once by the receipt uuid"
