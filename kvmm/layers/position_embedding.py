"""Learned position embeddings, and resizing a grid of them to another resolution."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops
from kvmm.layers.initialization import initializer


@keras.saving.register_keras_serializable(package="kvmm")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned ``(num_positions, hidden_dim)`` table to its input.

    Inputs shorter than ``num_positions`` use the first rows (text towers accept any
    length up to the number of positions); longer inputs raise a ``ValueError``.
    """

    def __init__(self, num_positions: int, hidden_dim: int, initializer="random_normal", **kwargs):
        super().__init__(**kwargs)
        self.num_positions = num_positions
        self.hidden_dim = hidden_dim
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            shape=(self.num_positions, self.hidden_dim),
            initializer=initializer(self.initializer),
            name="embeddings",
        )
        self.built = True

    def call(self, x):
        length = x.shape[1]
        if length is not None and length > self.num_positions:
            raise ValueError(
                f"Input has {length} positions but the model has only {self.num_positions} "
                f"(layer {self.name!r}). Use at most {self.num_positions} tokens."
            )
        if length is None:
            length = ops.shape(x)[1]
        table = ops.cast(self.embeddings, x.dtype)
        if x.shape[1] == self.num_positions:
            return x + table[None]
        return x + ops.slice(table, (0, 0), (length, self.hidden_dim))[None]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            num_positions=self.num_positions,
            hidden_dim=self.hidden_dim,
            initializer=keras.initializers.serialize(self.initializer),
        )
        return config


def _cubic_weights(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys cubic convolution weights for the 4 taps around each sample (PyTorch's A=-0.75)."""

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def _bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``(out_size, in_size)`` matrix of 1-D bicubic resampling, ``align_corners=False``,
    with edge samples clamped, as ``torch.nn.functional.interpolate(mode="bicubic")``."""
    scale = in_size / out_size
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    base = np.floor(src)
    weights = _cubic_weights(src - base)
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for tap in range(4):
        index = np.clip(base.astype(np.int64) - 1 + tap, 0, in_size - 1)
        np.add.at(matrix, (np.arange(out_size), index), weights[:, tap])
    return matrix


def resize_position_grid(
    table: np.ndarray,
    new_grid: tuple[int, int],
    num_prefix_tokens: int = 0,
) -> np.ndarray:
    """Resize a square grid of learned position embeddings with bicubic interpolation.

    Matches ``torch.nn.functional.interpolate(..., mode="bicubic", align_corners=False)``
    as transformers' ``interpolate_pos_encoding`` uses it, so a model loaded at another
    resolution computes what transformers computes with ``interpolate_pos_encoding=True``.

    Args:
        table: ``(num_prefix_tokens + g*g, dim)`` position table of a ``g x g`` patch grid.
        new_grid: ``(rows, cols)`` of the target patch grid.
        num_prefix_tokens: leading rows that are not part of the grid (e.g. CLIP's class
            position); they are kept as they are.

    Returns:
        ``(num_prefix_tokens + rows*cols, dim)`` array of ``table``'s dtype.
    """
    table = np.asarray(table)
    prefix, grid = table[:num_prefix_tokens], table[num_prefix_tokens:]
    old = int(round(np.sqrt(grid.shape[0])))
    if old * old != grid.shape[0]:
        raise ValueError(
            f"Position table has {grid.shape[0]} grid rows, which is not a square grid."
        )
    rows, cols = new_grid
    if (rows, cols) == (old, old):
        return table
    dim = grid.shape[-1]
    grid = grid.reshape(old, old, dim).astype(np.float64)
    resized = np.einsum(
        "ri,ijd,cj->rcd", _bicubic_matrix(old, rows), grid, _bicubic_matrix(old, cols)
    )
    resized = resized.reshape(rows * cols, dim).astype(table.dtype)
    return np.concatenate([prefix, resized], axis=0)
