"""Tests of the reference loyalty core (simulators/core)."""
