"""Export settings: one validated object built by the CLI (or a test) and passed to every pipeline step."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from amaas_export.errors import ConfigError

DEFAULT_EPOCHS = 20
DEFAULT_IMAGE_SIZE = 32


@dataclass(frozen=True)
class ExportConfig:
    """Everything that decides what ``amaas export`` produces; recorded in the manifest for re-runs.

    Attributes:
        arch: ``cifar-cnn`` or a torchvision classifier name.
        data: Dataset spec, see ``amaas_export.data``.
        out: Artifact directory to (re)place on success.
        epochs: Training epochs; ``None`` means 20 from scratch, 0 when ``weights`` are given.
        weights: A state dict to start from (loaded with ``weights_only=True``).
        max_accuracy_drop: Largest allowed INT8 top-1 drop below FP32, in percentage points.
        seed: Seeds data generation, splits, initialisation, shuffling and calibration sampling.
        image_size: Input side; ``None`` means 32 (cifar-cnn accepts only 32).
        batch_size: Training and evaluation batch size.
        learning_rate: Peak learning rate of the one-cycle schedule.
        calibration_samples: Training images used to calibrate INT8 activation ranges.
        parity_tolerance: Largest allowed max |logit difference| between ONNX Runtime and torch.
        name: Model name in the manifest; defaults to ``<arch>-<data source kind>``.
        version: Model version; defaults to the first 12 hex digits of the model's sha256.
    """

    arch: str = "cifar-cnn"
    data: str = "synthetic"
    out: Path = Path("dist/model")
    epochs: int | None = None
    weights: Path | None = None
    max_accuracy_drop: float = 1.0
    seed: int = 0
    image_size: int | None = None
    batch_size: int = 128
    learning_rate: float = 0.005
    calibration_samples: int = 512
    parity_tolerance: float = 1e-4
    name: str | None = None
    version: str | None = None

    def __post_init__(self) -> None:
        if self.epochs is not None and self.epochs < 0:
            raise ConfigError(f"--epochs must be >= 0, got {self.epochs}")
        if self.epochs == 0 and self.weights is None:
            raise ConfigError("--epochs 0 needs --weights: there is nothing to export without training")
        if not 0 <= self.max_accuracy_drop <= 100:
            raise ConfigError(f"--max-accuracy-drop is in percentage points, 0..100; got {self.max_accuracy_drop}")
        if self.image_size is not None and self.image_size < 16:
            raise ConfigError(f"--image-size must be at least 16, got {self.image_size}")
        if self.arch == "cifar-cnn" and self.image_size not in (None, 32):
            raise ConfigError("cifar-cnn takes 32x32 inputs only; drop --image-size or pick another --arch")
        if self.batch_size < 1 or self.calibration_samples < 1:
            raise ConfigError("--batch-size and --calibration-samples must be positive")
        if self.learning_rate <= 0 or self.parity_tolerance <= 0:
            raise ConfigError("learning rate and parity tolerance must be positive")

    @property
    def train_epochs(self) -> int:
        if self.epochs is not None:
            return self.epochs
        return 0 if self.weights is not None else DEFAULT_EPOCHS

    @property
    def input_size(self) -> int:
        return self.image_size or DEFAULT_IMAGE_SIZE

    @property
    def model_name(self) -> str:
        return self.name or f"{self.arch}-{self.data.partition(':')[0]}"

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
