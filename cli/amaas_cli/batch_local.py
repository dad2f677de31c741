"""``amaas batch run DIR [--workers N]``: the same per-image classification over a local folder, with no AWS.

With ``--workers N`` each worker is a process of its own with its own model (one session's intra-op threads
do little for a small model at batch 16, while processes scale with cores, and decoding is Python-held work
that threads would serialise). Workers take chunks of image paths in key order and hand back their results;
the parent writes them exactly as the one-process run does, so the output is the same whatever ``N``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from amaas.artifact.model import Model
from amaas.batch.results import Item, classify, json_lines
from amaas.errors import ModelUnavailableError
from amaas.serving import serving_model
from amaas.settings import Settings

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
# Images read and classified at a time (and per worker task): fills the model's batches of 16, keeps memory
# bounded whatever the folder's size, and is small enough that no worker waits long for the last task
CHUNK = 64

_model: Model | None = None  # a worker process's own model, loaded by the pool's initializer
_load_error: ModelUnavailableError | None = None


def image_keys(folder: Path) -> list[str]:
    """Every image file under ``folder`` (recursively, in sorted order), by relative path; bytes not read."""
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return [p.relative_to(folder).as_posix() for p in paths]


def local_items(folder: Path) -> list[Item]:
    """Every image under ``folder`` with its bytes, keyed by its relative path."""
    return _items(folder, image_keys(folder))


def _items(folder: Path, keys: Sequence[str]) -> list[Item]:
    return [Item(key=key, data=(folder / key).read_bytes()) for key in keys]


def worker_count(requested: int) -> int:
    """``0`` means one worker per core this process may use."""
    if requested > 0:
        return requested
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_local(model: Model, folder: Path, out: Path, top_k: int) -> list[dict[str, Any]]:
    """Classifies a folder in this process; writes a JSON per image plus summary.jsonl under ``out``."""
    keys = image_keys(folder)
    chunks = (classify(model, _items(folder, keys[i : i + CHUNK]), top_k) for i in range(0, len(keys), CHUNK))
    return write_results(out, chunks)


def run_parallel(settings: Settings, folder: Path, out: Path, top_k: int, workers: int) -> list[dict[str, Any]]:
    """Classifies ``folder`` with ``workers`` processes; writes the same files as ``run_local``.

    Raises:
        ModelUnavailableError: The workers could not load the model.
    """
    keys = image_keys(folder)
    chunks = [keys[i : i + CHUNK] for i in range(0, len(keys), CHUNK)]
    with ProcessPoolExecutor(
        max_workers=max(1, min(workers, len(chunks))),
        mp_context=_start_method(),
        initializer=_load,
        initargs=(settings,),
    ) as pool:
        # results come back in chunk order, and each chunk is written while the workers classify the next ones
        return write_results(out, pool.map(_classify, [(folder, c, top_k) for c in chunks]))


def _start_method() -> multiprocessing.context.BaseContext:
    """fork when it is safe, since a forked worker starts with every module already imported (a spawned one
    re-imports numpy, Pillow, ONNX Runtime and the serving package: seconds on a busy machine): on Linux, with
    no other thread in this process whose locks a fork could copy mid-use, and no model loaded here. Otherwise
    spawn."""
    if sys.platform == "linux" and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def write_results(out: Path, chunks: Iterable[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A JSON per image (``out/<key>.json``) as each chunk of results arrives, then ``out/summary.jsonl``,
    in the order given; returns every result."""
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    for chunk in chunks:
        for result in chunk:
            target = out / (result["key"] + ".json")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(result, indent=2) + "\n")
        results += chunk
    (out / "summary.jsonl").write_bytes(json_lines(results))
    return results


def _load(settings: Settings) -> None:
    global _model, _load_error
    _model = serving_model(settings)
    try:
        _model.load()
    except ModelUnavailableError as exc:
        _load_error = exc  # raised by the first task, so the parent reports it like the one-process run


def _classify(task: tuple[Path, list[str], int]) -> list[dict[str, Any]]:
    folder, keys, top_k = task
    if _load_error is not None:
        raise _load_error
    assert _model is not None, "the pool's initializer loads the model"
    return classify(_model, _items(folder, keys), top_k)
