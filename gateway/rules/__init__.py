"""The pure rule engine: program config + account state + receipt -> calculation.

No I/O, no clock reads (time is an argument). Shared by the reference core
(``simulators/core``) and the gateway's offline policy: one implementation of
``shared/loyalty-rules.md``.
"""
