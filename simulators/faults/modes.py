"""Fault modes of :class:`~simulators.faults.proxy.FaultProxy` and their settings (pure).

Owns the vocabulary shared by the Python API, the HTTP control endpoint and the CLI:

- ``pass``: bytes flow untouched;
- ``latency``: every chunk, in each direction, is held ``latency_ms`` (+ uniform ``0..jitter_ms``)
  before it is forwarded; order is preserved;
- ``refuse``: the listener stays open but each new connection is reset on accept (RST);
  existing connections keep working;
- ``down``: the listener is closed, so new connections get ``ECONNREFUSED``; existing
  connections keep working;
- ``blackhole``: nothing is forwarded in either direction and nothing is answered; new
  connections are accepted but never reach the upstream. Like dropped packets under TCP, the
  bytes are held (one chunk per direction, then kernel buffers fill), so when the mode ends the
  streams resume intact;
- ``flap``: alternates ``flap_ms`` of ``pass`` with ``flap_down_ms`` (default ``flap_ms``) of
  outage, where the outage cuts every connection and resets new ones.

``cut`` is not a mode but a one-shot action (close every current connection now); the control
endpoint and :meth:`FaultSettings.from_json` accept ``{"mode": "cut"}`` as a request for it.

Invariant: a :class:`FaultSettings` is always valid (non-negative integers, a positive flap
period in ``flap`` mode); anything else raises :class:`ValueError` naming the field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

CUT = "cut"


class Mode(StrEnum):
    """What the proxy does with traffic (see the module docstring)."""

    PASS = "pass"
    LATENCY = "latency"
    REFUSE = "refuse"
    DOWN = "down"
    BLACKHOLE = "blackhole"
    FLAP = "flap"


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """A mode plus its parameters; parameters irrelevant to the mode are kept but ignored."""

    mode: Mode = Mode.PASS
    latency_ms: int = 0
    jitter_ms: int = 0
    flap_ms: int = 500
    flap_down_ms: int = 0  # 0 = same as flap_ms

    def __post_init__(self) -> None:
        for name in ("latency_ms", "jitter_ms", "flap_ms", "flap_down_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: must be a non-negative integer (milliseconds), got {value!r}")
        if self.mode is Mode.FLAP and self.flap_ms <= 0:
            raise ValueError("flap_ms: must be positive in flap mode")

    @property
    def down_ms(self) -> int:
        """Length of a flap outage."""
        return self.flap_down_ms or self.flap_ms

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["mode"] = self.mode.value
        return data

    @classmethod
    def from_json(cls, data: Any, *, base: FaultSettings | None = None) -> FaultSettings:
        """Settings from a JSON object such as ``{"mode": "latency", "latency_ms": 200}``.

        Parameters not given are taken from ``base`` (the current settings), so switching
        to ``flap`` keeps an earlier ``flap_ms``. Raises :class:`ValueError` on anything
        unknown or invalid (``"cut"`` is not a mode: callers handle it first).
        """
        if not isinstance(data, dict):
            raise ValueError("body: must be a JSON object")
        known = {"mode", "latency_ms", "jitter_ms", "flap_ms", "flap_down_ms"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown field (known: {', '.join(sorted(known))})")
        base = base or cls()
        raw_mode = data.get("mode", base.mode.value)
        try:
            mode = Mode(raw_mode)
        except ValueError:
            choices = ", ".join([m.value for m in Mode] + [CUT])
            raise ValueError(f"mode: unknown mode {raw_mode!r} (one of {choices})") from None
        return cls(
            mode=mode,
            latency_ms=data.get("latency_ms", base.latency_ms),
            jitter_ms=data.get("jitter_ms", base.jitter_ms),
            flap_ms=data.get("flap_ms", base.flap_ms),
            flap_down_ms=data.get("flap_down_ms", base.flap_down_ms),
        )


@dataclass(frozen=True, slots=True)
class ProxyStats:
    """Counters since start (a snapshot)."""

    connections_total: int
    connections_active: int
    refused: int
    upstream_failures: int
    bytes_up: int  # client -> upstream
    bytes_down: int  # upstream -> client
    cuts: int  # cut actions (manual or flap)
    cut_connections: int  # connections closed by cuts

    def to_json(self) -> dict[str, int]:
        return asdict(self)
