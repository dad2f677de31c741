"""SnapStart's after-restore hook renews what sandboxes restored from one snapshot would otherwise share."""

from __future__ import annotations

import random
import sys
import types

import numpy as np
import pytest

from amaas import snapstart
from amaas.observability import logger


class Client:
    def __init__(self) -> None:
        self.cleared = 0

    def cache_clear(self) -> None:
        self.cleared += 1


def test_after_restore_reseeds_renews_the_sandbox_id_and_drops_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the runtime's hook registry, and generators in the state a snapshot froze them in
    hooks: list[object] = []
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", types.SimpleNamespace(register_after_restore=hooks.append))
    client = Client()
    assert snapstart.register(client)
    random.seed(0)
    np.random.seed(0)
    frozen = (random.random(), np.random.random())
    random.seed(0)
    np.random.seed(0)
    before = logger.get_current_keys()["sandbox"]

    # WHEN the sandbox is restored
    (after_restore,) = hooks
    after_restore()  # type: ignore[operator]

    # THEN its random numbers, its id and its clients are its own
    assert (random.random(), np.random.random()) != frozen
    assert logger.get_current_keys()["sandbox"] != before
    assert client.cleared == 1


def test_without_the_runtimes_hook_module_nothing_is_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)

    assert snapstart.register(Client()) is False
