"""Customer identity helpers (loyalty-rules.md §1 Customer).

Phones are normalised to E.164 before lookup whatever the cashier typed (``8 (912) 345-67-89``,
``+7 912 3456789``, ``79123456789`` -> ``+79123456789``); the till shows a masked name
(«Анна К.») for the cashier to confirm.
"""

from __future__ import annotations

import phonenumbers


def normalize_phone(text: str, region: str = "RU") -> str:
    """Any typed form of a phone number -> E.164; ValueError when it is not a valid number."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {text!r}") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"not a valid phone number: {text!r}")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def mask_name(full_name: str) -> str:
    """«Анна Кузнецова» -> «Анна К.»; a single word stays as it is; blank -> ""."""
    parts = full_name.split()
    if not parts:
        return ""
    if len(parts) == 1:
        return parts[0]
    return f"{parts[0]} {parts[1][0].upper()}."
