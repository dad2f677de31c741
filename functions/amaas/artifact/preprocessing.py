"""Pixels to model input, defined once and used by export (calibration, evaluation) and serving alike.

Numpy only, so it runs in the Lambda runtime and tests without onnxruntime. Bytes and images become pixels
at the model's geometry in ``amaas.artifact.imaging``; this module turns those pixels into the tensor the model takes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from amaas.artifact.imaging import to_model
from amaas.artifact.manifest import Preprocessing, TensorSpec


def normalize(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """uint8 NHWC RGB pixels to the float32 NCHW tensor the model takes.

    Args:
        pixels: Array of shape (N, H, W, 3), dtype uint8, RGB.
        prep: The manifest's preprocessing.

    Returns:
        Contiguous float32 array of shape (N, 3, H, W).
    """
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"expected uint8 pixels of shape (N, H, W, 3), got {pixels.shape}")
    if prep.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    scale = np.float32(1.0 / 255.0)
    mean = np.asarray(prep.mean, dtype=np.float32)[:, None, None]
    inv_std = np.float32(1.0) / np.asarray(prep.std, dtype=np.float32)[:, None, None]
    # In place in the NCHW output, reading the uint8 pixels through a transposed view: the same float32
    # arithmetic as ``(pixels * scale - mean) * inv_std``, without its three full-size float temporaries and
    # the strided transpose copy (1.9 ms -> 0.2 ms for one 224x224 image on a loaded core).
    tensor = np.empty((pixels.shape[0], 3, *pixels.shape[1:3]), dtype=np.float32)
    np.multiply(pixels.transpose(0, 3, 1, 2), scale, out=tensor)
    tensor -= mean
    tensor *= inv_std
    return tensor


def model_input(pixels: np.ndarray, prep: Preprocessing, spec: TensorSpec) -> np.ndarray:
    """uint8 NHWC RGB pixels to what the model's input takes.

    A uint8 input means the export folded scaling and normalisation into the graph: the pixels go in as
    they are. A float input gets ``normalize`` here, transposed when the model wants NHWC.
    """
    if spec.dtype == "uint8":
        return np.ascontiguousarray(pixels)
    tensor = normalize(pixels, prep)
    if spec.layout == "NHWC":
        return np.ascontiguousarray(tensor.transpose(0, 2, 3, 1))
    return tensor


def prepare(images: Sequence[Image.Image], prep: Preprocessing, spec: TensorSpec) -> np.ndarray:
    """Decoded RGB images to one input batch for a model with input ``spec``."""
    return model_input(np.stack([to_model(image, prep) for image in images]), prep, spec)
