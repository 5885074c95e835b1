"""The serial driver's other side: see simulators.devices."""
