"""``posgw sim display``: see simulators.devices."""
