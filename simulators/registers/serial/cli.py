"""``posgw sim serial``: the serial driver's devices (customer QR scanner, customer display) on pty pairs.

The same as ``posgw sim devices`` (``posgw sim scanner`` and ``posgw sim display`` are shortcuts):
``posgw sim serial scanner --link PATH --scan CODE``, ``posgw sim serial display --link PATH``.
"""

from simulators.devices.cli import add_arguments, run

__all__ = ["add_arguments", "run"]
