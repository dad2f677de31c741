"""Export settings: one validated object, built by the CLI from flags and an optional TOML file (or by a test),
passed to every pipeline step and recorded in the manifest so an export can be re-run exactly."""

from __future__ import annotations

import tomllib
import types
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from amaas.artifact.manifest import INTERPOLATIONS
from amaas.artifact.tasks import TASKS
from amaas_export.errors import ConfigError

DEFAULT_EPOCHS = 20
CIFAR_CNN = "cifar-cnn"
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
QUANT_TYPES = ("uint8", "int8")
QUANTIZE_MODES = ("int8", "auto", "none")
FOLD_MODES = ("auto", "on", "off")
OPTIMIZE_LEVELS = ("none", "basic", "extended")


@dataclass(frozen=True)
class QuantizationConfig:
    """How the float model becomes INT8 (static, QDQ, ONNX Runtime).

    Attributes:
        mode: ``int8`` quantizes with the settings below; ``auto`` tries a set of candidates and keeps the
            fastest that passes the accuracy gate (FP32 ships if none does, unless ``require_int8``);
            ``none`` ships the float model.
        calibration: How activation ranges are picked from calibration data: minmax, entropy, percentile.
        per_channel: One weight scale per output channel (else one per tensor).
        activation_type, weight_type: uint8 or int8. ORT recommends uint8 activations with int8 weights on CPUs.
        float_nodes: Node names kept in float, on top of the logits layer (always kept in float).
        calibration_samples: Training images used for calibration.
        require_int8: With ``auto``, fail instead of shipping FP32 when no candidate passes.
    """

    mode: str = "int8"
    calibration: str = "minmax"
    per_channel: bool = True
    activation_type: str = "uint8"
    weight_type: str = "int8"
    float_nodes: tuple[str, ...] = ()
    calibration_samples: int = 512
    require_int8: bool = False

    def __post_init__(self) -> None:
        _check_types(self)
        _choice("--quantize", self.mode, QUANTIZE_MODES)
        _choice("--calibration", self.calibration, CALIBRATION_METHODS)
        _choice("--activation-type", self.activation_type, QUANT_TYPES)
        _choice("--weight-type", self.weight_type, QUANT_TYPES)
        if self.calibration_samples < 1:
            raise ConfigError("--calibration-samples must be positive")

    def describe(self) -> str:
        granularity = "per-channel" if self.per_channel else "per-tensor"
        short = {"uint8": "U8", "int8": "S8"}
        return f"{self.calibration}/{granularity}/{short[self.activation_type]}{short[self.weight_type]}"


@dataclass(frozen=True)
class Training:
    """How a task trains: the export's ``--epochs``, ``--batch-size``, ``--learning-rate`` and ``--seed``."""

    epochs: int
    batch_size: int
    learning_rate: float
    seed: int


@dataclass(frozen=True)
class ExportConfig:
    """Everything that decides what ``amaas export`` produces.

    ``task`` names what the model does (``amaas.artifact.tasks``): classification, or a dense task whose
    architectures, data forms, metrics and parity come from ``amaas_export.tasks``.

    Model source (one of): ``arch`` (``cifar-cnn``, a torchvision classifier, or ``package.module:Class``) with
    optional ``weights`` (a state-dict file or a torchvision weights name such as ``IMAGENET1K_V1``); or
    ``from_onnx`` (an existing ONNX model) with ``labels_file`` and, for a dense task, ``task_config`` (a JSON
    file of the manifest's ``task_config``: what its outputs mean).

    Attributes:
        data: Dataset spec, see ``amaas_export.data``; held-out images drive every gate.
        num_classes: Expected class count; checked against the data (and against pretrained heads).
        freeze_backbone: Train only the classifier head (transfer learning).
        image_size: Model input side (crop). Defaults: 32 for cifar-cnn, the weights' crop for pretrained
            weights, 224 for other torchvision models and ONNX models without a fixed size.
        resize: Shorter side before the centre crop; defaults to the weights' resize or ``image_size``.
        mean, std, channel_order, interpolation: Preprocessing; defaults come from the weights (pretrained
            weights bring their resize, crop, interpolation and mean/std), the data (mean/std of the training
            images) or, for ONNX models, ImageNet's statistics. ``interpolation=None`` means the weights'
            (bilinear without them).
        epochs, batch_size, learning_rate, seed: Training. ``epochs=None`` means 20 from scratch, 0 with weights.
        prune: Fraction of channels removed by structured pruning (0 = no pruning); ``prune_epochs`` fine-tunes after.
        quantization: See ``QuantizationConfig``.
        max_accuracy_drop: Largest INT8 top-1 drop below its float model, in points.
        max_prune_drop: Largest pruned top-1 drop below the unpruned model, in points.
        parity_tolerance: Largest max |logit difference| between ONNX Runtime and torch.
        max_size_mb: Largest served model file; the default leaves room beside the runtime layer in
            Lambda's 250 MB.
        fold_normalization: Put scaling and normalisation in the graph (uint8 NHWC input): on, off, or auto
            (when measured faster).
        optimize: ONNX Runtime graph optimizations baked into the file (portable levels only).
        out, name, version: Artifact directory, model name and version.
    """

    task: str = "classification"
    arch: str = CIFAR_CNN
    data: str = "synthetic"
    out: Path = Path("dist/model")
    weights: str | None = None
    from_onnx: Path | None = None
    labels_file: Path | None = None
    task_config: Path | None = None
    num_classes: int | None = None
    freeze_backbone: bool = False
    image_size: int | None = None
    resize: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    channel_order: str = "RGB"
    interpolation: str | None = None
    epochs: int | None = None
    batch_size: int = 128
    learning_rate: float = 0.005
    seed: int = 0
    prune: float = 0.0
    prune_epochs: int | None = None
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    max_accuracy_drop: float = 1.0
    max_prune_drop: float = 2.0
    parity_tolerance: float = 1e-4
    max_size_mb: float = 100.0
    fold_normalization: str = "auto"
    optimize: str = "extended"
    name: str | None = None
    version: str | None = None

    def __post_init__(self) -> None:
        _check_types(self)
        _choice("--task", self.task, tuple(TASKS))
        if self.task != "classification" and self.arch == CIFAR_CNN and self.from_onnx is None:
            raise ConfigError(f"--task {self.task} needs --arch (a torchvision {self.task} model or module:Class)")
        if self.task != "classification" and self.prune:
            raise ConfigError(f"--prune is for classification models; --task {self.task} does not prune")
        if self.task_config is not None and self.from_onnx is None:
            raise ConfigError("--task-config declares an imported model's outputs: it goes with --from-onnx")
        if self.from_onnx is not None:
            if self.labels_file is None:
                raise ConfigError("--from-onnx needs --labels FILE (one class name per line, in output order)")
            if self.weights or self.prune or self.epochs or self.freeze_backbone:
                raise ConfigError(
                    "--from-onnx skips torch: --weights, --epochs, --prune and --freeze-backbone do not apply"
                )
        if self.epochs is not None and self.epochs < 0:
            raise ConfigError(f"--epochs must be >= 0, got {self.epochs}")
        if self.epochs == 0 and self.weights is None and self.from_onnx is None:
            raise ConfigError("--epochs 0 needs --weights: there is nothing to export without training")
        for name in ("max_accuracy_drop", "max_prune_drop"):
            if not 0 <= getattr(self, name) <= 100:
                raise ConfigError(
                    f"--{name.replace('_', '-')} is in percentage points, 0..100; got {getattr(self, name)}"
                )
        if self.image_size is not None and self.image_size < 16:
            raise ConfigError(f"--image-size must be at least 16, got {self.image_size}")
        if self.arch == CIFAR_CNN and self.from_onnx is None and self.image_size not in (None, 32):
            raise ConfigError("cifar-cnn takes 32x32 inputs only; drop --image-size or pick another --arch")
        if self.resize is not None and self.resize < (self.image_size or 16):
            raise ConfigError("--resize must be at least --image-size (it is the side before the centre crop)")
        if self.prune_epochs is not None and self.prune_epochs < 0:
            raise ConfigError(f"--prune-epochs must be >= 0, got {self.prune_epochs}")
        if not 0 <= self.prune < 1:
            raise ConfigError(f"--prune is the fraction of channels to remove, 0 <= p < 1; got {self.prune}")
        if self.batch_size < 1 or self.learning_rate <= 0 or self.parity_tolerance <= 0 or self.max_size_mb <= 0:
            raise ConfigError("--batch-size, --learning-rate, --parity-tolerance and --max-size-mb must be positive")
        if self.num_classes is not None and self.num_classes < 2:
            raise ConfigError("--num-classes must be at least 2")
        _choice("--fold-normalization", self.fold_normalization, FOLD_MODES)
        _choice("--optimize", self.optimize, OPTIMIZE_LEVELS)
        _choice("--channel-order", self.channel_order, ("RGB", "BGR"))
        if self.interpolation is not None:
            _choice("--interpolation", self.interpolation, INTERPOLATIONS)

    @property
    def train_epochs(self) -> int:
        if self.epochs is not None:
            return self.epochs
        return 0 if self.weights is not None or self.from_onnx is not None else DEFAULT_EPOCHS

    @property
    def training(self) -> Training:
        return Training(self.train_epochs, self.batch_size, self.learning_rate, self.seed)

    @property
    def finetune_epochs(self) -> int:
        """Epochs of fine-tuning after pruning: a quarter of the training, at least one."""
        if self.prune_epochs is not None:
            return self.prune_epochs
        return max(1, self.train_epochs // 4)

    @property
    def model_name(self) -> str:
        source = self.from_onnx.stem if self.from_onnx else self.arch.rpartition(":")[2] or self.arch
        return self.name or f"{source}-{self.data.partition(':')[0]}"

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain TOML/JSON values; ``from_options(to_dict())`` rebuilds the same config."""
        data = asdict(self)
        quant = data.pop("quantization")
        data.update({_QUANT_KEYS.get(k, k): v for k, v in quant.items()})
        return {k: _plain(v) for k, v in data.items() if v is not None and k != "out"}

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ExportConfig:
        """Builds a config from flat option names: CLI dest names, flag names or TOML keys, with dashes or
        underscores (see ``canonical_options``).

        Raises:
            ConfigError: An unknown option or a value of the wrong type.
        """
        flat = canonical_options(options)
        quant_fields = {f.name for f in fields(QuantizationConfig)}
        top_fields = {f.name for f in fields(cls)} - {"quantization"}
        reverse = {v: k for k, v in _QUANT_KEYS.items()}
        unknown = set(flat) - top_fields - quant_fields - set(reverse)
        if unknown:
            raise ConfigError(f"unknown export option(s): {', '.join(sorted(unknown))}")
        quant = {
            reverse.get(k, k): v for k, v in flat.items() if reverse.get(k, k) in quant_fields and k not in top_fields
        }
        top = {k: v for k, v in flat.items() if k in top_fields}
        # Files and flags give text and lists; the types below are checked in __post_init__.
        for key in ("out", "from_onnx", "labels_file"):
            if isinstance(top.get(key), str):
                top[key] = Path(top[key])
        for key in ("mean", "std"):
            if isinstance(top.get(key), list | tuple):
                top[key] = tuple(float(v) if _is_number(v) else v for v in top[key])
        nodes = quant.get("float_nodes")
        if isinstance(nodes, str | list):
            quant["float_nodes"] = tuple(nodes.split(",") if isinstance(nodes, str) else nodes)
        if isinstance(top.get("weights"), Path):
            top["weights"] = str(top["weights"])
        try:
            return cls(quantization=QuantizationConfig(**quant), **top)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad export option value: {exc}") from exc


# Quantization settings appear flat in flags and files under these names.
_QUANT_KEYS = {"mode": "quantize"}
# Flags named unlike the setting they set; a file may use either name.
_ALIASES = {"labels": "labels_file", "model_version": "version"}
_INVERTED = {"per_tensor": "per_channel"}
_FLAGS = {"labels_file": "--labels", "version": "--model-version", "mode": "--quantize"}


def canonical_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options under the names ``from_options`` reads: underscores for dashes, and the flag names that
    differ from their setting (``labels``, ``model-version``, ``per-tensor = true``) renamed; ``None`` dropped.

    Raises:
        ConfigError: One setting given twice under different names, or ``per-tensor`` not true or false.
    """
    result: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        name = key.replace("-", "_")
        if name in _INVERTED:
            if not isinstance(value, bool):
                raise ConfigError(f"{key} must be true or false; got {value!r}")
            name, value = _INVERTED[name], not value
        name = _ALIASES.get(name, name)
        if name in result:
            raise ConfigError(f"{key} sets {_flag(name)}, which is given twice")
        result[name] = value
    return result


def read_config_file(path: Path) -> dict[str, Any]:
    """Options from a TOML file: flat keys named like the flags (``arch = "resnet18"``, ``prune = 0.5``)."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def write_config_file(path: Path, config: ExportConfig) -> None:
    """The settings as a TOML file that ``amaas export --config`` reads back to the same export."""
    lines = ["# amaas export --config <this file> re-runs this export", ""]
    for key, value in config.to_dict().items():
        lines.append(f"{key.replace('_', '-')} = {_toml(value)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _choice(flag: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{flag} must be one of {', '.join(allowed)}; got {value!r}")


def _flag(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def _check_types(settings: QuantizationConfig | ExportConfig) -> None:
    """Refuses values of the wrong type (``data = 5`` in a file) with the option's name, before any use."""
    hints = get_type_hints(type(settings))
    for f in fields(settings):
        value, expected = getattr(settings, f.name), hints[f.name]
        if not _is_a(value, expected):
            raise ConfigError(f"{_flag(f.name)} must be {_describe(expected)}; got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_a(value: Any, expected: Any) -> bool:
    origin, args = get_origin(expected), get_args(expected)
    if origin in (Union, types.UnionType):
        return any(_is_a(value, arg) for arg in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_is_a(v, args[0]) for v in value)
        return len(value) == len(args) and all(_is_a(v, a) for v, a in zip(value, args, strict=True))
    if expected is float:
        return _is_number(value)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _describe(expected: Any) -> str:
    args = [a for a in get_args(expected) if a is not type(None)]
    if get_origin(expected) in (Union, types.UnionType) and len(args) == 1:
        return _describe(args[0])
    if get_origin(expected) is tuple:
        return "a list of names" if args[-1] is Ellipsis else "three numbers (R G B)"
    names = {str: "text", int: "a whole number", float: "a number", bool: "true or false", Path: "a path"}
    return names.get(expected, getattr(expected, "__name__", str(expected)))
