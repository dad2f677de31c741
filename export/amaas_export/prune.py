"""Structured channel pruning with torch-pruning: whole filters are removed and every layer that consumes them
is shrunk to match, so parameters and MACs really go down (``torch.nn.utils.prune`` only masks weights)."""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
from torch import nn

from amaas_export.errors import ConfigError
from amaas_export.models import head_layer


def prune_channels(model: nn.Module, example: torch.Tensor, ratio: float) -> nn.Module:
    """Removes ``ratio`` of the channels of every prunable layer, by L2 magnitude, in place.

    Channels coupled by residual additions or concatenations are pruned together (torch-pruning's
    dependency graph). The classifier head keeps its outputs: they are the classes.

    A frozen backbone is pruned too, and stays frozen. torch-pruning finds layers by tracing the autograd
    graph, in which frozen layers do not appear (it would prune nothing), and it swaps in new trainable
    ``nn.Parameter``s (which would unfreeze them for the fine-tuning that follows); so every parameter is
    made trainable for the pruning and the frozen ones are frozen again afterwards.

    Raises:
        ConfigError: torch-pruning cannot trace the architecture.
    """
    import torch_pruning as tp

    model.eval()
    frozen = {name for name, parameter in model.named_parameters() if not parameter.requires_grad}
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            pruner = tp.pruner.MagnitudePruner(
                model,
                example,
                importance=tp.importance.MagnitudeImportance(p=2),
                pruning_ratio=ratio,
                ignored_layers=[head_layer(model)],
            )
            pruner.step()
    except Exception as exc:
        raise ConfigError(
            f"structured pruning failed on this architecture ({exc.__class__.__name__}: {exc}); export without --prune"
        ) from exc
    finally:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name not in frozen)
    return model
