"""Evotor smart tills: on-terminal plugin events and Evotor cloud webhooks (plain metadata; see README.md)."""

NAME = "evotor"
TITLE = "Evotor (terminal plugin + cloud webhooks)"
SHAPE = "push"  # routes under /v1/evotor/; no poll loop
DELIVERY = "at-least-once from the plugin and the cloud; applied once by the receipt uuid"
