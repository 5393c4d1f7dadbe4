"""kvmm.losses against direct NumPy computations of the papers' formulas."""

import keras
import numpy as np
import pytest
from keras import ops

from kvmm.losses import ContrastiveLoss, SigmoidLoss


def numpy_sigmoid_loss(logits):
    """SigLIP: -1/B sum_ij log sigmoid(z_ij * logits_ij), z = +1 on the diagonal else -1."""
    logits = logits.astype(np.float64)
    z = 2 * np.eye(len(logits)) - 1
    return np.sum(np.logaddexp(0.0, -z * logits)) / len(logits)


def numpy_contrastive_loss(logits):
    """CLIP: mean of the text->image and image->text cross-entropies, labels = arange(B)."""
    logits = logits.astype(np.float64)

    def cross_entropy(rows):
        shifted = rows - rows.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return -np.mean(np.diag(log_probs))

    return 0.5 * (cross_entropy(logits) + cross_entropy(logits.T))


@pytest.mark.parametrize("batch", [1, 2, 5, 16])
@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_losses_equal_numpy_formulas(batch, scale):
    rng = np.random.default_rng(batch)
    logits = (rng.normal(size=(batch, batch)) * scale).astype("float32")
    sigmoid = float(SigmoidLoss()(None, logits))
    contrastive = float(ContrastiveLoss()(None, {"text_logits": logits}))
    np.testing.assert_allclose(sigmoid, numpy_sigmoid_loss(logits), rtol=1e-5)
    np.testing.assert_allclose(contrastive, numpy_contrastive_loss(logits), rtol=1e-5, atol=1e-6)


def test_sigmoid_loss_uses_all_pairs_not_a_softmax():
    # Raising one negative pair's logit raises the SigLIP loss even when it stays below the
    # positive (a softmax loss would only see the relative change).
    base = np.full((3, 3), -5.0, "float32")
    np.fill_diagonal(base, 5.0)
    worse = base.copy()
    worse[0, 1] = 0.0
    assert float(SigmoidLoss()(None, worse)) > float(SigmoidLoss()(None, base)) + 0.1


@pytest.mark.parametrize("loss", [SigmoidLoss(), ContrastiveLoss()], ids=["sigmoid", "contrastive"])
def test_gradients_finite_at_huge_logits(loss):
    logits = np.array([[1e4, -1e4, 3e4], [-2e4, 1e4, 1e4], [5e3, -1e4, -3e4]], "float32")
    value, grad = _value_and_grad(loss, logits)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert value > 1e3  # the misranked pairs are counted, not clipped away


def _value_and_grad(loss, logits):
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        value, grad = jax.value_and_grad(lambda x: loss(None, x))(logits)
    elif backend == "tensorflow":
        import tensorflow as tf

        x = tf.Variable(logits)
        with tf.GradientTape() as tape:
            value = loss(None, x)
        grad = tape.gradient(value, x)
    else:
        import torch

        x = torch.tensor(logits, requires_grad=True)
        value = loss(None, x)
        value.backward()
        grad = x.grad
    return float(ops.convert_to_numpy(value)), ops.convert_to_numpy(grad)


def test_losses_compute_in_float32_from_bfloat16_logits():
    logits = ops.cast(np.eye(4, dtype="float32") * 8 - 4, "bfloat16")
    value = SigmoidLoss()(None, logits)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    expected = numpy_sigmoid_loss(np.eye(4, dtype="float32") * 8 - 4)
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)


def test_unpaired_batch_is_refused_clearly():
    with pytest.raises(ValueError, match="matching image-text pairs"):
        SigmoidLoss()(None, np.zeros((2, 3), "float32"))
    with pytest.raises(KeyError, match="text_logits"):
        ContrastiveLoss()(None, {"image_logits": np.zeros((2, 2), "float32")})


def test_losses_serialize():
    for loss in (SigmoidLoss(), ContrastiveLoss()):
        restored = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(restored) is type(loss) and restored.name == loss.name
