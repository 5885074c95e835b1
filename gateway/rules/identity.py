"""Customer identity helpers (loyalty-rules.md §1 Customer)."""

from __future__ import annotations


def normalize_phone(text: str, region: str = "RU") -> str:
    raise NotImplementedError


def mask_name(full_name: str) -> str:
    raise NotImplementedError
