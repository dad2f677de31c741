from __future__ import annotations

import pytest

from amaas_export.errors import GateError
from amaas_export.gates import check_accuracy_drop, check_prune_drop, check_size


def test_int8_gate_passes_within_the_allowed_drop() -> None:
    assert check_accuracy_drop(0.90, 0.895, 1.0) == pytest.approx(0.5)
    assert check_accuracy_drop(0.90, 0.91, 0.0) == pytest.approx(-1.0)


def test_int8_gate_fails_past_the_allowed_drop_with_the_figures() -> None:
    with pytest.raises(GateError, match=r"from 90.00% \(PRUNED\) to 88.00% \(INT8\), a drop of 2.00 points"):
        check_accuracy_drop(0.90, 0.88, 1.0, "PRUNED")


def test_prune_gate_both_ways() -> None:
    assert check_prune_drop(0.9, 0.89, 2.0) == pytest.approx(1.0)
    with pytest.raises(GateError, match="pruning gate failed"):
        check_prune_drop(0.9, 0.85, 2.0)


def test_size_gate_both_ways() -> None:
    check_size(5_000_000, 5.0)
    with pytest.raises(GateError, match=r"the served model is 5\.00 MB; the budget is 4\.5 MB"):
        check_size(5_000_000, 4.5)
