"""Modul Kassa registers through our loyalty plugin (plain metadata; see README.md)."""

NAME = "modulkassa"
TITLE = "Modul Kassa (loyalty plugin: loyalty-request and check broadcasts)"
SHAPE = "push"  # routes under /v1/modulkassa/; no poll loop
DELIVERY = "at-least-once from the plugin's forwarding outbox; applied once by the check id"
