"""The dedup evaluation's small profile (bench/dedup_eval.py) over the sandbox: no wrong grouping,
cross-channel same-customer cases grouped, the same result whatever the order and batching."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import dedup_eval  # noqa: E402


@pytest.mark.slow
def test_dedup_evaluation_small_profile():
    report = dedup_eval.evaluate(customers=40, runs=3, seed=3)
    kinds = report["kinds"]
    assert report["wrong_groupings"] == 0
    assert min(kinds["cross-invoice"]["recall"]) >= 0.95 and kinds["cross-invoice"]["precision"] == [1.0] * 3
    for kind in ("generic-name", "quoted-invoice", "resolved-long-ago"):
        if kind in kinds:
            assert sum(kinds[kind]["false_pairs"]) == 0, kind
    assert all(k["identical_across_runs"] for k in kinds.values())
