"""The soak in small: five seeded SIGKILLs under load from two till simulators, core link flapping.

``make soak`` runs the same code (:mod:`simulators.soak`) with a thousand kills and every till
simulator; this keeps the machinery honest in ``make test`` (no timing assertions). Rerun a
failing schedule with ``POSGW_SOAK_SEED=<seed>``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simulators.soak import SoakOptions, run_soak

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def test_a_short_soak_loses_and_doubles_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("POSGW_SOAK_SEED", "7"))
    options = SoakOptions(kills=5, seed=seed, vendors=("native", "evotor"), tills_per_vendor=2, rate=20.0,
                          max_life_s=0.6, drain_s=60.0)
    result = await run_soak(options, tmp_path)
    print("\n" + result.summary())
    assert result.kills_done == 5
    assert result.acknowledged > 0
    assert set(result.per_vendor) == {"native", "evotor"}
    assert all(fig["acknowledged"] > 0 for fig in result.per_vendor.values()), result.per_vendor
    assert result.pending_after_drain == 0
    assert result.lost == [], result.lost[:10]
    assert result.doubled == [], result.doubled[:10]
    assert result.ok
