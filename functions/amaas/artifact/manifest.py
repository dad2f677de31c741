"""The artifact manifest: the single contract between the export pipeline and the serving runtime.

An artifact is a directory holding ``model.onnx``, ``manifest.json`` and ``MODEL_CARD.md``. The export writes
the manifest; serving reads the labels, the input spec and the preprocessing from it and nothing else, so a
model can never be served with preprocessing that differs from the one it was evaluated with.

The parts serving interprets are typed. The rest (metrics, provenance, library versions) is carried as plain
JSON so the export can grow it without a schema bump.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from amaas.errors import ManifestError

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
CARD_FILE = "MODEL_CARD.md"
# Manifest key for what the exporting machine did (local paths, settings): written for the model card and
# re-runs, never returned to API clients.
PROVENANCE = "provenance"

LAYOUTS = ("NCHW", "NHWC")
CHANNEL_ORDERS = ("RGB", "BGR")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
INPUT_DTYPES = ("float32", "uint8")
PIXEL_SCALE = 1 / 255  # pixels 0..255 to 0..1, torchvision's ToTensor
# "crop": shorter side to ``resize``, centre crop (classification); "stretch": the whole image to crop x crop,
# aspect ratio not kept, so every pixel of the original maps to the model's input and back (dense tasks).
RESIZE_MODES = ("crop", "stretch")


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (-1 for dynamic), element type and, for images, layout of a model input or output."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    layout: str | None = None

    def __post_init__(self) -> None:
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ManifestError(f"unknown tensor layout {self.layout!r}; expected one of {LAYOUTS}")


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image becomes the model's input tensor, torchvision's eval transform in data form.

    With ``resize_mode`` ``crop``: resize the shorter side to ``resize`` with ``interpolation``, centre-crop
    ``crop`` x ``crop``. With ``stretch``: resize the whole image to ``crop`` x ``crop`` (``resize`` equals
    ``crop``), so answers map back to every pixel of the original. Then put the channels in ``channel_order``;
    for a float input, multiply by ``scale`` (1/255: pixels 0..1; 1 for a model that scales 0..255 pixels
    itself, as a Keras ``Rescaling`` layer does), subtract ``mean`` and divide by ``std`` per channel. A uint8
    input takes the pixels as they are: its graph does the arithmetic.
    """

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    channel_order: str = "RGB"
    scale: float = PIXEL_SCALE
    resize_mode: str = "crop"

    def __post_init__(self) -> None:
        if not 0 < self.scale < float("inf"):
            raise ManifestError(f"preprocessing scale must be a positive number, got {self.scale}")
        if not 0 < self.crop <= self.resize:
            raise ManifestError(f"preprocessing needs 0 < crop <= resize, got crop={self.crop} resize={self.resize}")
        if self.resize_mode not in RESIZE_MODES:
            raise ManifestError(f"unknown resize_mode {self.resize_mode!r}; expected one of {RESIZE_MODES}")
        if self.resize_mode == "stretch" and self.resize != self.crop:
            raise ManifestError("preprocessing resize_mode 'stretch' needs resize == crop (the model's side)")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ManifestError("preprocessing mean and std need three values each, std > 0")
        if self.interpolation not in INTERPOLATIONS:
            raise ManifestError(f"unknown interpolation {self.interpolation!r}; expected one of {INTERPOLATIONS}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ManifestError(f"unknown channel order {self.channel_order!r}; expected one of {CHANNEL_ORDERS}")


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Manifest:
    """A parsed ``manifest.json``.

    Attributes:
        name: Model name, chosen at export.
        version: Model version; by default derived from the model file's hash, so it changes iff the model does.
        architecture: The network, such as ``cifar-cnn`` or ``resnet18``.
        labels: Class names in output-index order.
        input: The model's image input.
        output: The model's logits output.
        preprocessing: The transform every input goes through, in export and serving alike.
        files: sha256 and size of every file in the artifact except the manifest itself.
        metrics: Measured figures such as ``metrics["int8"]["top1"]``; fractions, not percentages.
        details: Everything else the export records: provenance, settings, library versions.
        task: What the model does (``amaas.artifact.tasks``); artifacts older than the field classify.
        task_config: The task's own contract (segmentation: logits stride, background; detection: anchors,
            thresholds), parsed and checked by the task (``Task.check``), written under ``task_config``.
        extra_outputs: Outputs after ``output``, in the model's output order (a detector's second head).
    """

    name: str
    version: str
    architecture: str
    labels: tuple[str, ...]
    input: TensorSpec
    output: TensorSpec
    preprocessing: Preprocessing
    files: Mapping[str, FileEntry] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    task: str = "classification"
    task_config: Mapping[str, Any] = field(default_factory=dict)
    extra_outputs: tuple[TensorSpec, ...] = ()

    def __post_init__(self) -> None:
        if not self.labels:
            raise ManifestError("manifest has no labels")
        _check_image_input(self.input)
        from amaas.artifact.tasks import task_for  # the tasks build on this module

        task_for(self.task).check(self)

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """Every output, in the model's order."""
        return (self.output, *self.extra_outputs)

    @property
    def model_sha256(self) -> str:
        entry = self.files.get(MODEL_FILE)
        return entry.sha256 if entry else ""

    def public_dict(self) -> dict[str, Any]:
        """What API clients may see: the manifest without file names and without provenance."""
        data = self.to_dict(include_files=False)
        data.pop(PROVENANCE, None)
        data["model"]["sha256"] = self.model_sha256
        return data

    def to_dict(self, *, include_files: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "model": {"name": self.name, "version": self.version, "architecture": self.architecture},
            "task": self.task,
            "labels": list(self.labels),
            "input": _tensor_dict(self.input),
            "output": _tensor_dict(self.output),
            "preprocessing": {
                "resize": self.preprocessing.resize,
                "crop": self.preprocessing.crop,
                "interpolation": self.preprocessing.interpolation,
                "mean": list(self.preprocessing.mean),
                "std": list(self.preprocessing.std),
                "channel_order": self.preprocessing.channel_order,
                "resize_mode": self.preprocessing.resize_mode,
                "scale": self.preprocessing.scale,
            },
            "metrics": dict(self.metrics),
            **dict(self.details),
        }
        if self.task_config:
            data["task_config"] = dict(self.task_config)
        if self.extra_outputs:
            data["extra_outputs"] = [_tensor_dict(spec) for spec in self.extra_outputs]
        if include_files:
            data["files"] = {name: {"sha256": e.sha256, "bytes": e.bytes} for name, e in sorted(self.files.items())}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Raises:
        ManifestError: A field is missing or of the wrong type, named as a person would look for it.
        """
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ManifestError(f"manifest schema_version {version!r} is not supported (expected {SCHEMA_VERSION})")
        model, prep = _section(data, "model"), _section(data, "preprocessing")
        files = _section(data, "files") if "files" in data else {}
        known = {"schema_version", "model", "task", "labels", "input", "output", "preprocessing", "files", "metrics"}
        known |= {"task_config", "extra_outputs"}
        return cls(
            name=_field(model, "name", str, "model."),
            version=_field(model, "version", str, "model."),
            architecture=_field(model, "architecture", str, "model."),
            labels=_field(data, "labels", _strings),
            input=_tensor_spec(_section(data, "input"), "input."),
            output=_tensor_spec(_section(data, "output"), "output."),
            preprocessing=Preprocessing(
                resize=_field(prep, "resize", int, "preprocessing."),
                crop=_field(prep, "crop", int, "preprocessing."),
                mean=_field(prep, "mean", _triple, "preprocessing."),
                std=_field(prep, "std", _triple, "preprocessing."),
                interpolation=_field(prep, "interpolation", str, "preprocessing.", "bilinear"),
                channel_order=_field(prep, "channel_order", str, "preprocessing.", "RGB"),
                scale=_field(prep, "scale", float, "preprocessing.", PIXEL_SCALE),
                resize_mode=_field(prep, "resize_mode", str, "preprocessing.", "crop"),
            ),
            files={
                str(name): FileEntry(
                    sha256=_field(_section(files, str(name), "files."), "sha256", str, f"files.{name}."),
                    bytes=_field(_section(files, str(name), "files."), "bytes", int, f"files.{name}."),
                )
                for name in files
            },
            metrics=_section(data, "metrics") if "metrics" in data else {},
            details={k: v for k, v in data.items() if k not in known},
            task=_field(data, "task", str, "", "classification"),
            task_config=_section(data, "task_config") if "task_config" in data else {},
            extra_outputs=_extra_outputs(data),
        )


_T = TypeVar("_T")
_MISSING = object()


def _section(data: Mapping[Any, Any], key: Any, prefix: str = "") -> dict[str, Any]:
    """``data[key]``, which must be a JSON object."""
    value = _field(data, key, lambda v: v, prefix)
    if not isinstance(value, dict):
        raise ManifestError(f"manifest.json field '{prefix}{key}' must be an object")
    return value


def _field(
    data: Mapping[Any, Any], key: Any, convert: Callable[[Any], _T], prefix: str = "", default: Any = _MISSING
) -> _T:
    """``convert(data[key])``, with errors that name the field (``model.name``), never a Python exception."""
    if key not in data:
        if default is _MISSING:
            raise ManifestError(f"manifest.json is missing field '{prefix}{key}'")
        return convert(default)
    try:
        return convert(data[key])
    except (TypeError, ValueError, OverflowError) as exc:
        raise ManifestError(f"manifest.json field '{prefix}{key}' has a value of the wrong type or form") from exc


def _check_image_input(spec: TensorSpec) -> None:
    """The input serving builds from images: a batch of RGB images, float32 or uint8, channels where its layout
    says (a spec without a layout is NCHW if float, NHWC if uint8, as artifacts before the field were)."""
    if spec.dtype not in INPUT_DTYPES:
        raise ManifestError(f"input {spec.name} is {spec.dtype}; amaas feeds images as one of {INPUT_DTYPES}")
    if len(spec.shape) != 4 or spec.shape[channel_axis(spec)] not in (-1, 3):
        raise ManifestError(f"input {spec.name} {list(spec.shape)} is not a batch of RGB images in {layout_of(spec)}")


def layout_of(spec: TensorSpec) -> str:
    """NCHW or NHWC; artifacts written before inputs carried a layout had NCHW floats or NHWC uint8 pixels."""
    return spec.layout or ("NHWC" if spec.dtype == "uint8" else "NCHW")


def channel_axis(spec: TensorSpec) -> int:
    return 3 if layout_of(spec) == "NHWC" else 1


def _tensor_dict(spec: TensorSpec) -> dict[str, Any]:
    data: dict[str, Any] = {"name": spec.name, "shape": list(spec.shape), "dtype": spec.dtype}
    if spec.layout:
        data["layout"] = spec.layout
    return data


def _tensor_spec(data: Mapping[str, Any], prefix: str) -> TensorSpec:
    layout = data.get("layout")
    return TensorSpec(
        name=_field(data, "name", str, prefix),
        shape=_field(data, "shape", _ints, prefix),
        dtype=_field(data, "dtype", str, prefix),
        layout=str(layout) if layout else None,
    )


def _extra_outputs(data: Mapping[str, Any]) -> tuple[TensorSpec, ...]:
    extra = dict(enumerate(_field(data, "extra_outputs", _list, "", [])))
    return tuple(_tensor_spec(_section(extra, i, "extra_outputs."), f"extra_outputs.{i}.") for i in extra)


def _list(values: Any) -> list[Any]:
    if not isinstance(values, list):
        raise TypeError("expected a list")
    return values


def _strings(values: Any) -> tuple[str, ...]:
    if not isinstance(values, list):
        raise TypeError("expected a list")
    return tuple(str(v) for v in values)


def _ints(values: Any) -> tuple[int, ...]:
    if not isinstance(values, list):
        raise TypeError("expected a list")
    return tuple(int(v) for v in values)


def _triple(values: Any) -> tuple[float, float, float]:
    if not isinstance(values, list) or len(values) != 3:
        raise ValueError("expected three numbers")
    a, b, c = (float(v) for v in values)
    return a, b, c


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path) -> FileEntry:
    return FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)


def read_manifest(model_dir: Path) -> Manifest:
    """Parses ``model_dir/manifest.json``.

    Raises:
        ManifestError: The file is missing, not JSON, or not a manifest this runtime understands.
    """
    path = model_dir / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError("no manifest.json in the model directory; export a model first") from exc
    except UnicodeDecodeError as exc:
        raise ManifestError("manifest.json is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise ManifestError(f"manifest.json is not valid JSON (line {exc.lineno}, column {exc.colno})") from exc
    except RecursionError as exc:
        raise ManifestError("manifest.json is nested too deeply") from exc
    except OSError as exc:
        raise ManifestError("manifest.json could not be read") from exc
    if not isinstance(data, dict):
        raise ManifestError("manifest.json must hold a JSON object")
    return Manifest.from_dict(data)


def write_manifest(model_dir: Path, manifest: Manifest) -> Path:
    path = model_dir / MANIFEST_FILE
    path.write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def verify_files(model_dir: Path, manifest: Manifest) -> None:
    """Checks that every file the manifest lists is present with the recorded size and sha256.

    Raises:
        ManifestError: A file is missing or differs; the message names the file, not the path.
    """
    if MODEL_FILE not in manifest.files:
        raise ManifestError(f"manifest does not list {MODEL_FILE}")
    for name, entry in manifest.files.items():
        path = model_dir / name
        if not path.is_file():
            raise ManifestError(f"artifact file {name} is missing")
        if path.stat().st_size != entry.bytes or sha256_file(path) != entry.sha256:
            raise ManifestError(f"artifact file {name} does not match its sha256 in the manifest")
