"""The scenarios of the fault catalogue (:mod:`simulators.faults.catalogue`), grouped by what breaks:
:mod:`.network` (the core link), :mod:`.delivery` (crashes, disk, files, queues) and
:mod:`.business` (clocks, balances, copies and order); :mod:`.common` is what they share."""
