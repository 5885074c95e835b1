"""posgw: the POS loyalty gateway daemon.

Public API for drivers: :mod:`gateway.receipt` (canonical model), :mod:`gateway.driver`
(the driver contract and registry), :mod:`gateway.errors` (the error hierarchy).
"""

__version__ = "0.1.0"
