"""Episodes 0, 1 and 49 of libero_long and libero_90 under ``standard`` against openpi's loop
(the other suites in ``test_fixtures.py``; the loops in ``anchor_loops.py``)."""

from __future__ import annotations

import pytest
from anchor_loops import LONG_SUITES, check_standard_gives_openpis_first_observations


@pytest.mark.sim
@pytest.mark.slow
@pytest.mark.parametrize("suite", LONG_SUITES)
def test_standard_gives_openpis_first_observations_with_any_worker_count(suite: str) -> None:
    check_standard_gives_openpis_first_observations(suite)
