"""``posgw sim scanner``: see simulators.devices."""
