"""The model: the one door to the ONNX Runtime session, for serving and for export alike.

Lifecycle as in KServe's ``Model``: ``load()`` once per container, then ``preprocess()`` -> ``predict()`` ->
``postprocess()`` per request (``infer()`` does all three), with a ``ready`` flag health checks read. What the
model does is its task (``amaas.artifact.tasks``), named by the manifest: the task turns bytes into the
model's pixels and its outputs into answers. Every route, batch job, explanation, the pre-traffic check and
the export's golden samples go through here; nothing else touches the session, which is built once and shared
by every request and thread (``InferenceSession.run`` is thread-safe).

The serving side passes its tracing and logging in (``span``, ``on_load``): this package imports neither.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from amaas.artifact.imaging import Decoded, Limits
from amaas.artifact.manifest import MODEL_FILE, Manifest, read_manifest, verify_files
from amaas.artifact.preprocessing import model_input
from amaas.artifact.session import create_session
from amaas.artifact.tasks import Task, task_for
from amaas.errors import AmaasError, InvalidRequestError, ModelUnavailableError

# Decodes running at once: more would only share the same cores while multiplying peak memory (each may take
# up to the decode budget), which is what lets a local server's thread pool take sixteen bombs at a time.
_DECODE_SLOTS = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
Span = Callable[[str, Manifest], AbstractContextManager[Any]]


@contextlib.contextmanager
def _no_span(step: str, manifest: Manifest) -> Iterator[None]:
    yield


@dataclass(frozen=True)
class Inference:
    """The task's answer for every image, in request order, and where the time went."""

    results: list[Any]
    preprocess_ms: float
    inference_ms: float


class Model:
    """Args:
    model_dir: The artifact directory (``model.onnx`` + ``manifest.json``).
    threads: ONNX Runtime intra-op threads.
    limits: What decoding one image may cost (``amaas.artifact.imaging``).
    span: A context manager per step (``preprocess``, ``inference``) and the manifest of the model doing it: the
        serving side's trace subsegments.
    on_load: Called with the model once it is loaded: the serving side's log binding.
    """

    def __init__(
        self,
        model_dir: Path,
        *,
        threads: int = 1,
        limits: Limits | None = None,
        span: Span = _no_span,
        on_load: Callable[[Model], None] | None = None,
    ) -> None:
        self.model_dir = model_dir
        self.threads = threads
        self.limits = limits or Limits()
        self._span = span
        self._on_load = on_load
        self._manifest: Manifest | None = None
        self._task: Task | None = None
        self._session: Any = None
        self._lock = threading.Lock()
        self.load_ms = 0.0

    @classmethod
    def for_file(cls, model_path: Path, manifest: Manifest, *, threads: int = 1) -> Model:
        """A model file described by an in-memory manifest: the export's stages, before an artifact exists."""
        model = cls(model_path.parent, threads=threads)
        model._start(manifest, model_path)
        return model

    @property
    def ready(self) -> bool:
        return self._session is not None

    @property
    def manifest(self) -> Manifest:
        self.load()
        assert self._manifest is not None
        return self._manifest

    @property
    def task(self) -> Task:
        self.load()
        assert self._task is not None
        return self._task

    def load(self) -> None:
        """Reads and verifies the artifact, builds the session and runs one warm-up batch. Idempotent.

        Raises:
            ModelUnavailableError: The artifact is missing, fails its hash check, names a task this runtime does
                not serve, or ORT cannot load it or run a warm-up batch of the manifest's input spec.
        """
        if self.ready:
            return
        with self._lock:
            if self.ready:
                return
            manifest = read_manifest(self.model_dir)
            verify_files(self.model_dir, manifest)
            self._start(manifest, self.model_dir / MODEL_FILE)
        if self._on_load is not None:
            self._on_load(self)

    def _start(self, manifest: Manifest, path: Path) -> None:
        started = time.perf_counter()
        task = task_for(manifest.task)
        try:
            session = create_session(path, threads=self.threads)
        except Exception as exc:
            raise ModelUnavailableError("ONNX Runtime could not load the model file") from exc
        _check_signature(session, manifest)
        try:
            warm_up = np.zeros([max(d, 1) for d in manifest.input.shape], dtype=manifest.input.dtype)
            session.run(None, {manifest.input.name: warm_up})
        except Exception as exc:
            # A raw ORT error here would crash Lambda init; as ModelUnavailableError the API answers 503
            raise ModelUnavailableError(
                "the model rejected a warm-up batch of the input shape and type its manifest declares; "
                "manifest.json and model.onnx disagree"
            ) from exc
        self._manifest, self._task, self._session = manifest, task, session
        self.load_ms = (time.perf_counter() - started) * 1000

    def pixels(self, image: bytes) -> np.ndarray:
        """One encoded image to uint8 HWC RGB pixels at the model's input geometry, as its task takes them."""
        return self.decode(image).pixels

    def decode(self, image: bytes) -> Decoded:
        """As ``pixels``, with the upright size of the original (which dense answers map back to)."""
        manifest, task = self.manifest, self.task
        with _DECODE_SLOTS:
            return task.pixels(image, manifest, self.limits)

    def preprocess(self, images: Sequence[bytes]) -> np.ndarray:
        """Encoded images to one input batch, following the manifest's preprocessing and input spec.

        Raises:
            InvalidRequestError: No images.
            InvalidImageError, PayloadTooLargeError: For the first image that fails, naming it in a batch.
        """
        return self._prepared(images)[0]

    def _prepared(self, images: Sequence[bytes]) -> tuple[np.ndarray, list[tuple[int, int]]]:
        _refuse_empty(len(images))
        with self._span("preprocess", self.manifest):
            decoded = []
            for i, image in enumerate(images):
                try:
                    decoded.append(self.decode(image))
                except AmaasError as exc:
                    if len(images) > 1:
                        exc.message = f"image {i}: {exc.message}"
                    raise
            return self.model_input(np.stack([d.pixels for d in decoded])), [d.size for d in decoded]

    def model_input(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 NHWC pixels at the input geometry to the tensor the model takes."""
        manifest = self.manifest
        return model_input(pixels, manifest.preprocessing, manifest.input)

    def check_input(self, tensor: np.ndarray) -> np.ndarray:
        """A client's tensor for the model's own input (``/v2``), refused unless it has the input's dtype and
        per-item shape and holds only finite values.

        Raises:
            InvalidRequestError: Another dtype, shape or rank; NaN or infinity; an empty batch.
        """
        spec = self.manifest.input
        if tensor.dtype != np.dtype(spec.dtype):
            raise InvalidRequestError(f"input {spec.name} must be {np.dtype(spec.dtype).name}")
        wanted = spec.shape[1:]
        if tensor.ndim != len(spec.shape) or tuple(tensor.shape[1:]) != wanted:
            raise InvalidRequestError(f"input {spec.name} must have shape [-1, {', '.join(map(str, wanted))}]")
        _refuse_empty(len(tensor))
        if tensor.dtype.kind == "f" and not np.isfinite(tensor).all():
            raise InvalidRequestError(f"input {spec.name} holds NaN or infinite values")
        return np.ascontiguousarray(tensor)

    def predict(self, batch: np.ndarray) -> list[np.ndarray]:
        """The model's outputs for one input batch.

        Raises:
            InvalidRequestError: An empty batch (ORT would answer one with an internal error).
        """
        _refuse_empty(len(batch))
        self.load()
        name, fixed = self.manifest.input.name, self.manifest.input.shape[0]
        with self._span("inference", self.manifest):
            if fixed < 1 or len(batch) == fixed:
                outputs: list[np.ndarray] = self._session.run(None, {name: batch})
                return outputs
            # A graph exported for a fixed batch (a whole detector with its NMS): run it that many at a time
            parts = [self._session.run(None, {name: batch[i : i + fixed]}) for i in range(0, len(batch), fixed)]
            return [np.concatenate([part[k] for part in parts]) for k in range(len(parts[0]))]

    def predict_pixels(self, pixels: np.ndarray) -> list[np.ndarray]:
        """Outputs for a uint8 NHWC batch already at the input geometry."""
        return self.predict(self.model_input(pixels))

    def postprocess(
        self, outputs: Sequence[np.ndarray], sizes: Sequence[tuple[int, int]] | None = None, **options: Any
    ) -> list[Any]:
        """The task's answer per image (classification: ``k`` most probable classes). ``sizes`` are the
        originals' (width, height), which dense answers map back to; without them, the model's input size."""
        if sizes is None:
            side = self.manifest.preprocessing.crop
            sizes = [(side, side)] * len(outputs[0])
        return self.task.decode(outputs, self.manifest, sizes, **options)

    def infer(self, images: Sequence[bytes], **options: Any) -> Inference:
        """The answers for encoded images, run as one batch."""
        started = time.perf_counter()
        batch, sizes = self._prepared(images)
        decoded = time.perf_counter()
        outputs = self.predict(batch)
        inferred = time.perf_counter()
        return Inference(
            results=self.postprocess(outputs, sizes, **options),
            preprocess_ms=(decoded - started) * 1000,
            inference_ms=(inferred - decoded) * 1000,
        )


def _refuse_empty(count: int) -> None:
    """Every way in (``/v1``, ``/v2`` images or tensors, batch jobs) reaches the model through ``preprocess``,
    ``check_input`` or ``predict``; an empty batch stops here, with one message, instead of failing inside numpy
    or ORT."""
    if count == 0:
        raise InvalidRequestError("the batch is empty; send at least one input")


def _check_signature(session: Any, manifest: Manifest) -> None:
    """The manifest and the model file must agree on the input name and on the outputs' count and fixed
    dimensions (the class count among them)."""
    inputs = [i.name for i in session.get_inputs()]
    if inputs != [manifest.input.name]:
        raise ModelUnavailableError(f"model inputs {inputs} do not match the manifest's {manifest.input.name!r}")
    outputs = session.get_outputs()
    if len(outputs) < len(manifest.outputs):
        raise ModelUnavailableError(f"model has {len(outputs)} outputs, the manifest lists {len(manifest.outputs)}")
    for actual, spec in zip(outputs, manifest.outputs, strict=False):
        fixed = zip(actual.shape, spec.shape, strict=False)
        if len(actual.shape) != len(spec.shape) or any(isinstance(a, int) and a != s != -1 for a, s in fixed):
            raise ModelUnavailableError(
                f"model output {actual.name} has shape {list(actual.shape)}; the manifest lists {list(spec.shape)} "
                f"for {len(manifest.labels)} labels"
            )
