"""SnapStart: after a restore, renew what must differ between sandboxes restored from one snapshot.

Lambda snapshots the API function's init phase once (the model loaded and warmed) and restores that snapshot
into every new sandbox, so whatever init left behind is shared by all of them. After each restore:

* the ``random`` module and numpy's global generator are reseeded from the operating system (they would
  otherwise produce the same sequence in every sandbox);
* the sandbox id in every log line is made anew (it is what tells sandboxes apart in the logs);
* cached AWS clients are dropped: their connections belonged to the snapshotted process, and a restored
  sandbox gets its own credentials.

The hooks are registered with ``snapshot_restore_py``, which Lambda's Python runtime ships; where it is missing
(``amaas serve``, tests) nothing is registered and nothing changes.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Protocol

import numpy as np

from amaas.observability import logger, new_sandbox_id


class _Cached(Protocol):
    def cache_clear(self) -> None: ...


def register(*clients: _Cached) -> bool:
    """Registers ``after_restore`` (dropping ``clients``, functools caches of AWS clients); returns whether the
    runtime supports SnapStart hooks here."""
    try:
        from snapshot_restore_py import register_after_restore
    except ImportError:
        return False
    register_after_restore(_after_restore(clients))
    return True


def _after_restore(clients: tuple[_Cached, ...]) -> Callable[[], None]:
    def after_restore() -> None:
        random.seed(os.urandom(32))
        np.random.seed(int.from_bytes(os.urandom(4), "little"))  # the legacy global generator itself
        for client in clients:
            client.cache_clear()
        sandbox = new_sandbox_id()
        logger.info("restored from snapshot", extra={"sandbox": sandbox, "renewed": ["random", "clients"]})

    return after_restore
