"""Test-only example drivers of the poll and device shapes, and the compliance runs against them."""
