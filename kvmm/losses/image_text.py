"""Pairwise image-text losses on a ``(texts, images)`` logits matrix."""

from __future__ import annotations

import keras
from keras import ops


def _text_logits(y_pred):
    """The ``(texts, images)`` logits from a model output dict or a matrix, in float32."""
    if isinstance(y_pred, dict):
        if "text_logits" not in y_pred:
            raise KeyError(
                f'Image-text losses need the model output "text_logits"; got keys {sorted(y_pred)}.'
            )
        y_pred = y_pred["text_logits"]
    logits = ops.cast(y_pred, "float32")
    if len(logits.shape) != 2:
        raise ValueError(f"Expected a (texts, images) logits matrix, got shape {logits.shape}.")
    rows, cols = logits.shape
    if rows is not None and cols is not None and rows != cols:
        raise ValueError(
            f"A training batch must hold matching image-text pairs (text i goes with image i), "
            f"but the logits are {rows} texts x {cols} images. Feed the same number of images "
            f"and texts per batch."
        )
    return logits


@keras.saving.register_keras_serializable(package="kvmm")
class ImageTextLoss(keras.losses.Loss):
    """Base of the pairwise losses. ``y_true`` is ignored (the pairs are the labels): pass
    ``None``. ``call`` returns one value per text row; the default reduction averages them."""

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype="float32"):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def __call__(self, y_true=None, y_pred=None, sample_weight=None):
        if y_pred is None:
            raise ValueError(f"{type(self).__name__} needs y_pred (the model outputs).")
        return super().__call__(ops.zeros((), "float32"), y_pred, sample_weight=sample_weight)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="kvmm")
class SigmoidLoss(ImageTextLoss):
    """SigLIP's pairwise sigmoid loss (Zhai et al., 2023).

    Every image-text pair of the batch is its own binary problem: the ``B`` matching pairs
    (the diagonal) are positives, the ``B*(B-1)`` others negatives, with no softmax over the
    batch::

        loss = -1/B * sum_i sum_j log_sigmoid(z_ij * logits_ij),   z_ij = 1 if i == j else -1

    The logits come from the model (``cosine * exp(logit_scale) + logit_bias``; SigLIP models
    start training from scale ``log(10)`` and bias ``-10``, as in the paper, so the many
    negatives do not dominate the first steps). Computed with ``log_sigmoid``: finite for any
    logit magnitude.
    """

    def __init__(self, name="sigmoid_loss", reduction="sum_over_batch_size", dtype="float32"):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        logits = _text_logits(y_pred)
        signs = 2.0 * ops.eye(ops.shape(logits)[0], ops.shape(logits)[1], dtype="float32") - 1.0
        return -ops.sum(ops.log_sigmoid(signs * logits), axis=-1)


@keras.saving.register_keras_serializable(package="kvmm")
class ContrastiveLoss(ImageTextLoss):
    """CLIP's symmetric contrastive (InfoNCE) loss (Radford et al., 2021).

    The mean of two cross-entropies over the batch, text->image (each text picks its image
    among the ``B``) and image->text::

        loss = 1/2 * (CE(softmax over images of logits_i., i) + CE(softmax over texts of logits_.j, j))

    with the model's ``exp(logit_scale)`` temperature already in the logits. Computed with
    ``log_softmax``: finite for any logit magnitude.
    """

    def __init__(self, name="contrastive_loss", reduction="sum_over_batch_size", dtype="float32"):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        logits = _text_logits(y_pred)
        text_to_image = ops.diagonal(ops.log_softmax(logits, axis=1))
        image_to_text = ops.diagonal(ops.log_softmax(logits, axis=0))
        return -0.5 * (text_to_image + image_to_text)
