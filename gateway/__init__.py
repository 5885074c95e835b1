"""posgw: the POS loyalty gateway daemon.

The public API for drivers is :data:`PUBLIC_FOR_DRIVERS`: the only ``gateway`` modules a module
under ``drivers/`` may import (checked by ``tests/test_conventions.py``). :mod:`gateway.receipt`
(canonical model), :mod:`gateway.driver` (the driver contract, :class:`~gateway.driver.Edge`,
refusals, counters, registry), :mod:`gateway.errors` (the error hierarchy),
:mod:`gateway.http_edge` (the request guard, auth, calc/submit helpers of HTTP drivers),
:mod:`gateway.fields` (JSON payload readers), :mod:`gateway.xml_fields` (safe XML and its
readers), :mod:`gateway.config` (``EdgeOptions``, ``Model``,
``secret_field`` for a driver's ``Config``), :mod:`gateway.slip` (the slip text, masking),
:mod:`gateway.poll` (the poll shape), :mod:`gateway.device` (the device shape). Everything
else (pipeline, outbox, sender, server, core client, rules...) is the daemon's own business.
"""

__version__ = "0.1.0"

PUBLIC_FOR_DRIVERS: tuple[str, ...] = (
    "gateway.receipt",
    "gateway.driver",
    "gateway.errors",
    "gateway.http_edge",
    "gateway.fields",
    "gateway.xml_fields",
    "gateway.config",
    "gateway.slip",
    "gateway.poll",
    "gateway.device",
)
