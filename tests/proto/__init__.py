"""Tests of the core API sources."""
