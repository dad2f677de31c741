"""The served model: an ONNX Runtime session plus the manifest that says how to feed it.

Lifecycle as in KServe's ``Model``: ``load()`` once per container, then ``preprocess()`` → ``predict()`` →
``postprocess()`` per request, with a ``ready`` flag health checks read. The session is built once and
shared by every request and thread (``InferenceSession.run`` is thread-safe).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from amaas import imaging, preprocessing
from amaas.errors import AmaasError, InvalidRequestError, ModelUnavailableError
from amaas.manifest import MODEL_FILE, Manifest, read_manifest, verify_files
from amaas.observability import bind_model, logger, traced
from amaas.postprocessing import Prediction, top_k

# Decodes running at once: more would only share the same cores while multiplying peak memory (each may take
# up to the decode budget), which is what lets a local server's thread pool take sixteen bombs at a time.
_DECODE_SLOTS = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))


def create_session(path: Path, *, threads: int) -> Any:
    """An ONNX Runtime CPU session with an explicit thread count (ORT's default is one per core, which on
    Lambda means oversubscription when memory settings and vCPUs disagree)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class Classification:
    """Top-k predictions per image, in request order, and where the time went."""

    predictions: list[list[Prediction]]
    preprocess_ms: float
    inference_ms: float


class ImageClassifier:
    """Args:
    model_dir: The artifact directory (``model.onnx`` + ``manifest.json``).
    threads: ONNX Runtime intra-op threads.
    limits: What decoding one image may cost (pixels, memory); see ``amaas.imaging``.
    """

    def __init__(self, model_dir: Path, *, threads: int = 1, limits: imaging.Limits | None = None) -> None:
        self.model_dir = model_dir
        self.threads = threads
        self.limits = limits or imaging.Limits()
        self._manifest: Manifest | None = None
        self._session: Any = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._session is not None

    @property
    def manifest(self) -> Manifest:
        self.load()
        assert self._manifest is not None
        return self._manifest

    def load(self) -> None:
        """Reads and verifies the artifact, builds the session and runs one warm-up batch. Idempotent.

        Raises:
            ModelUnavailableError: The artifact is missing, fails its hash check, or ORT cannot load it or run
                a warm-up batch of the manifest's input spec.
        """
        if self.ready:
            return
        with self._lock:
            if self.ready:
                return
            started = time.perf_counter()
            manifest = read_manifest(self.model_dir)
            verify_files(self.model_dir, manifest)
            try:
                session = create_session(self.model_dir / MODEL_FILE, threads=self.threads)
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
            self._manifest, self._session = manifest, session
            bind_model(manifest)
            logger.info("model loaded", extra={"load_ms": round((time.perf_counter() - started) * 1000, 1)})

    def pixels(self, image: bytes) -> np.ndarray:
        """One encoded image to uint8 HWC RGB pixels at the model's input geometry."""
        prep = self.manifest.preprocessing
        with _DECODE_SLOTS:
            return imaging.decode_pixels(image, prep, self.limits)

    def preprocess(self, images: Sequence[bytes]) -> np.ndarray:
        """Encoded images to one input batch, following the manifest's preprocessing and input spec.

        Raises:
            InvalidRequestError: No images.
            InvalidImageError, PayloadTooLargeError: For the first image that fails, naming it in a batch.
        """
        _refuse_empty(len(images))
        with traced("preprocess"):
            pixels = []
            for i, image in enumerate(images):
                try:
                    pixels.append(self.pixels(image))
                except AmaasError as exc:
                    if len(images) > 1:
                        exc.message = f"image {i}: {exc.message}"
                    raise
            return self.model_input(np.stack(pixels))

    def model_input(self, pixels: np.ndarray) -> np.ndarray:
        manifest = self.manifest
        return preprocessing.model_input(pixels, manifest.preprocessing, manifest.input)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Raises:
        InvalidRequestError: An empty batch (ORT would answer one with an internal error).
        """
        _refuse_empty(len(batch))
        self.load()
        with traced("inference"):
            logits: np.ndarray = self._session.run(None, {self.manifest.input.name: batch})[0]
        return logits

    def predict_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Logits for a uint8 NHWC batch already at the input geometry."""
        return self.predict(self.model_input(pixels))

    def postprocess(self, logits: np.ndarray, k: int) -> list[list[Prediction]]:
        return top_k(logits, self.manifest.labels, k)

    def classify(self, images: Sequence[bytes], k: int) -> Classification:
        """Top-``k`` for every image, run as one batch."""
        started = time.perf_counter()
        batch = self.preprocess(images)
        decoded = time.perf_counter()
        logits = self.predict(batch)
        inferred = time.perf_counter()
        return Classification(
            predictions=self.postprocess(logits, k),
            preprocess_ms=(decoded - started) * 1000,
            inference_ms=(inferred - decoded) * 1000,
        )


def _refuse_empty(count: int) -> None:
    """Every way in (``/v1``, ``/v2`` images or tensors, batch jobs) reaches the model through ``preprocess`` or
    ``predict``; an empty batch stops here, with one message, instead of failing inside numpy or ORT."""
    if count == 0:
        raise InvalidRequestError("the batch is empty; send at least one input")


def _check_signature(session: Any, manifest: Manifest) -> None:
    """The manifest and the model file must agree on the input name and class count."""
    inputs = [i.name for i in session.get_inputs()]
    if inputs != [manifest.input.name]:
        raise ModelUnavailableError(f"model inputs {inputs} do not match the manifest's {manifest.input.name!r}")
    classes = session.get_outputs()[0].shape[-1]
    if isinstance(classes, int) and classes != len(manifest.labels):
        raise ModelUnavailableError(f"model outputs {classes} classes, manifest lists {len(manifest.labels)} labels")
