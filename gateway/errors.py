"""The gateway's error hierarchy: few classes, each saying whether a retry may cure it.

Vendor and library exceptions are translated into these at the edge (drivers, core client,
config loader). Messages say what to do next.

``retriable`` is the one answer to "may the same request succeed later without anyone fixing
anything?": the sender decides its retry policy from it alone (see :mod:`gateway.sender`), and
:mod:`gateway.core_client` sets it from its one table of retriable gRPC status codes.
"""

from __future__ import annotations

from collections.abc import Mapping


class GatewayError(Exception):
    """Base class. ``retriable`` tells whether the same request may succeed later."""

    retriable: bool = False


class ConfigError(GatewayError):
    """A configuration problem: names the file, the key and the fix."""

    def __init__(self, file: str, key: str, problem: str, fix: str) -> None:
        self.file, self.key, self.problem, self.fix = file, key, problem, fix
        super().__init__(f"{file}: {key}: {problem} (fix: {fix})")


class BadInput(GatewayError):
    """The till sent something we cannot accept; ``field`` is the path of the bad value."""

    def __init__(self, message: str, field: str = "") -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class AuthError(GatewayError):
    """Missing or wrong credentials / signature, raised by the edge's auth checks (an
    ``http_edge.Auth``): ``reason`` is a short snake_case word for logs and the refusal body,
    never the secret; ``status`` is 401 (missing or wrong credentials) or 403 (forbidden)."""

    def __init__(self, reason: str, *, status: int = 401) -> None:
        self.reason, self.status = reason, status
        super().__init__(reason)


class CoreUnavailable(GatewayError):
    """The core could not be reached in time (down, slow, breaker open)."""

    retriable = True


class CoreRefused(CoreUnavailable):
    """The core turned the gateway away for a reason a retry alone does not cure (a gRPC status
    such as UNAUTHENTICATED or UNIMPLEMENTED: credentials, versions). Still a
    :class:`CoreUnavailable` for the calc path (the till is answered offline), but not retriable:
    the fix is configuration or an upgrade."""

    retriable = False


class BusinessRejection(GatewayError):
    """The core refused for a business reason (a §2.5 code such as INSUFFICIENT_POINTS).
    ``retriable`` is the core's word (``Rejection.retriable`` of an event ack); a refusal as a
    gRPC status is final."""

    def __init__(
        self, reason: str, message: str, metadata: Mapping[str, str] | None = None, *,
        retriable: bool = False,
    ) -> None:
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.retriable = retriable
        super().__init__(f"{reason}: {message}")


class StorageError(GatewayError):
    """The outbox cannot be written; the event was NOT stored and must not be acknowledged."""

    retriable = True
