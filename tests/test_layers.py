"""The shared blocks in kvmm.layers against PyTorch / NumPy references."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch

from kvmm.layers import (
    MLP,
    AttentionPoolingHead,
    MultiHeadAttention,
    PatchEmbedding,
    PositionEmbedding,
    TransformerEncoder,
    TransformerEncoderBlock,
    get_activation,
    resize_position_grid,
)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _reference_attention(layer, q_in, kv_in, mask=None, causal=False):
    """Plain NumPy multi-head attention with the layer's weights."""
    w = {name: _np(getattr(layer, name).kernel) for name in ("query", "key", "value", "output_dense")}
    b = {name: _np(getattr(layer, name).bias) for name in ("query", "key", "value", "output_dense")}
    heads, dim = layer.num_heads, layer.head_dim

    def split(x):
        return x.reshape(x.shape[0], x.shape[1], heads, dim).transpose(0, 2, 1, 3)

    q = split(q_in @ w["query"] + b["query"])
    k = split(kv_in @ w["key"] + b["key"])
    v = split(kv_in @ w["value"] + b["value"])
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dim)
    allowed = np.ones(scores.shape, bool)
    if mask is not None:
        allowed &= mask[:, None, None, :].astype(bool)
    if causal:
        allowed &= np.tril(np.ones(scores.shape[-2:], bool))
    scores = np.where(allowed, scores, -1e9)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = (probs @ v).transpose(0, 2, 1, 3).reshape(q_in.shape[0], q_in.shape[1], heads * dim)
    return out @ w["output_dense"] + b["output_dense"]


@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_matches_numpy(causal):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 24)).astype("float32")
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3])
    layer = MultiHeadAttention(24, 4)
    layer.build((None, 7, 24))
    got = _np(layer(x, padding_mask=mask, is_causal=causal))
    np.testing.assert_allclose(got, _reference_attention(layer, x, x, mask, causal), atol=1e-5)


def test_cross_attention_with_other_key_width():
    rng = np.random.default_rng(1)
    q, kv = rng.normal(size=(2, 3, 16)).astype("float32"), rng.normal(size=(2, 9, 10)).astype("float32")
    layer = MultiHeadAttention(16, 2, key_dim=10)
    layer.build((None, 3, 16), (None, 9, 10))
    np.testing.assert_allclose(_np(layer(q, key_value=kv)), _reference_attention(layer, q, kv), atol=1e-5)


def _gradients(fn, *inputs):
    """Gradients of ``sum(fn(*inputs) ** 2)`` with respect to every input, as NumPy arrays,
    with the current backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        grads = jax.grad(lambda *xs: (fn(*xs) ** 2).sum(), tuple(range(len(inputs))))(*inputs)
        return [np.asarray(g) for g in grads]
    if backend == "torch":
        xs = [torch.tensor(x, requires_grad=True) for x in inputs]
        (fn(*xs) ** 2).sum().backward()
        return [x.grad.numpy() for x in xs]
    import tensorflow as tf

    xs = [tf.constant(x) for x in inputs]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        loss = tf.reduce_sum(fn(*xs) ** 2)
    return [g.numpy() for g in tape.gradient(loss, xs)]


@pytest.mark.parametrize("implementation", ["heads_major_attention", "attention"])
@pytest.mark.parametrize("case", ["plain", "padding", "causal", "cross", "empty_row"])
def test_attention_paths_equal_keras_dot_product_attention(implementation, case):
    """kvmm's attention paths against keras.ops.dot_product_attention, outputs and
    gradients: ``attention`` (the dispatcher the layers call: the JAX-on-CPU path on JAX,
    SDPA on transposed views on PyTorch, Keras' op on TensorFlow) and
    ``heads_major_attention`` (written with keras.ops, so checked on every backend)."""
    from kvmm.layers import attention as module

    fn = getattr(module, implementation)
    rng = np.random.default_rng(3)
    q_len, kv_len = (5, 9) if case == "cross" else (7, 7)
    q = rng.normal(size=(2, q_len, 3, 8)).astype("float32")
    k = rng.normal(size=(2, kv_len, 3, 8)).astype("float32")
    v = rng.normal(size=(2, kv_len, 3, 8)).astype("float32")
    mask, causal = None, case == "causal"
    if case in ("padding", "empty_row"):
        keep = np.ones((2, kv_len), bool)
        keep[0, 4:] = False
        if case == "empty_row":
            keep[1] = False  # nothing to attend to: finite, as the fused op
        mask = keep[:, None, None, :]
    expected = _np(keras.ops.dot_product_attention(q, k, v, mask=mask, is_causal=causal))
    got = _np(fn(q, k, v, mask=mask, is_causal=causal))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, atol=2e-6)

    def keras_op(q, k, v):
        return keras.ops.dot_product_attention(q, k, v, mask=mask, is_causal=causal)

    # For the batch row with nothing to attend to ("empty_row"), the output (the mean of
    # the values) does not depend on q and k: the where-masking of heads_major_attention
    # gives them zero gradients, an additive mask (Keras' op on PyTorch) small nonzero
    # ones. Only finiteness is compared there.
    compared = slice(0, 1) if case == "empty_row" else slice(None)
    for a, b in zip(_gradients(lambda q, k, v: fn(q, k, v, mask=mask, is_causal=causal), q, k, v),
                    _gradients(keras_op, q, k, v)):
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a[compared], b[compared], atol=2e-5)


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("variant", ["bias", "no_bias", "activation", "lora"])
def test_dense_equals_keras_dense(variant, dtype):
    """kvmm.layers.Dense (F.linear on PyTorch) computes what keras.layers.Dense does with
    the same variables: outputs and gradients, with LoRA enabled and under mixed precision."""
    from kvmm.layers import Dense

    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 5, 12)).astype("float32")
    options = dict(use_bias=variant != "no_bias",
                   activation="gelu" if variant == "activation" else None, dtype=dtype)
    ours, theirs = Dense(10, **options), keras.layers.Dense(10, **options)
    for layer in (ours, theirs):
        layer.build(x.shape)
    if variant == "lora":
        for layer in (ours, theirs):
            layer.enable_lora(2)
    for a, b in zip(ours.weights, theirs.weights):
        value = rng.normal(size=a.shape).astype("float32")
        a.assign(value)
        b.assign(value)
    got, expected = ours(x), theirs(x)
    assert keras.backend.standardize_dtype(got.dtype) == keras.backend.standardize_dtype(
        expected.dtype)
    atol = 1e-5 if dtype == "float32" else 5e-2
    np.testing.assert_allclose(_np(keras.ops.cast(got, "float32")),
                               _np(keras.ops.cast(expected, "float32")), atol=atol, rtol=1e-2)
    if dtype == "float32":
        for a, b in zip(_gradients(ours, x), _gradients(theirs, x)):
            np.testing.assert_allclose(a, b, atol=1e-4)
    if variant == "lora":
        assert [w.path for w in ours.trainable_weights] == [
            w.path.replace(theirs.name, ours.name) for w in theirs.trainable_weights]


def test_heads_major_attention_in_bfloat16_stays_close():
    from kvmm.layers.attention import heads_major_attention

    rng = np.random.default_rng(4)
    q, k, v = (rng.normal(size=(2, 16, 4, 32)).astype("float32") for _ in range(3))
    expected = _np(keras.ops.dot_product_attention(q, k, v))
    low = [keras.ops.cast(x, "bfloat16") for x in (q, k, v)]
    got = heads_major_attention(*low)
    assert keras.backend.standardize_dtype(got.dtype) == "bfloat16"
    np.testing.assert_allclose(_np(keras.ops.cast(got, "float32")), expected, atol=3e-2)


def test_attention_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)


@pytest.mark.parametrize(
    "name, reference",
    [
        ("gelu_tanh", lambda t: torch.nn.functional.gelu(t, approximate="tanh")),
        ("gelu", lambda t: torch.nn.functional.gelu(t)),
        ("quick_gelu", lambda t: t * torch.sigmoid(1.702 * t)),
    ],
)
def test_activations_match_torch(name, reference):
    x = np.linspace(-6, 6, 101).astype("float32")
    np.testing.assert_allclose(_np(get_activation(name)(x)), reference(torch.tensor(x)).numpy(), atol=1e-6)


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="relu6"):
        get_activation("relu6")


def test_patch_embedding_matches_torch_conv_order():
    rng = np.random.default_rng(2)
    images = rng.normal(size=(2, 24, 16, 3)).astype("float32")
    layer = PatchEmbedding(5, 8)
    layer.build((None, 24, 16, 3))
    conv = torch.nn.Conv2d(3, 5, 8, stride=8)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(_np(layer.projection.kernel).transpose(3, 2, 0, 1)))
        conv.bias.copy_(torch.tensor(_np(layer.projection.bias)))
        expected = conv(torch.tensor(images).permute(0, 3, 1, 2)).flatten(2).transpose(1, 2).numpy()
    got = _np(layer(images))
    assert got.shape == (2, 6, 5)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_position_embedding_slices_and_refuses_overflow():
    layer = PositionEmbedding(6, 4)
    layer.build()
    x = np.zeros((1, 4, 4), "float32")
    np.testing.assert_allclose(_np(layer(x))[0], _np(layer.embeddings)[:4])
    with pytest.raises(ValueError, match="7 positions but the model has only 6"):
        layer(np.zeros((1, 7, 4), "float32"))


@pytest.mark.parametrize("old, new", [(4, (7, 7)), (7, (4, 4)), (6, (9, 5)), (5, (5, 5))])
def test_resize_position_grid_matches_torch_bicubic(old, new):
    rng = np.random.default_rng(3)
    table = rng.normal(size=(1 + old * old, 6)).astype("float32")
    got = resize_position_grid(table, new, num_prefix_tokens=1)
    grid = torch.tensor(table[1:]).reshape(1, old, old, 6).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=new, mode="bicubic", align_corners=False)
    expected = expected.permute(0, 2, 3, 1).reshape(-1, 6).numpy()
    np.testing.assert_array_equal(got[:1], table[:1])
    np.testing.assert_allclose(got[1:], expected, atol=1e-5)


def test_resize_position_grid_needs_a_square_grid():
    with pytest.raises(ValueError, match="square"):
        resize_position_grid(np.zeros((10, 3)), (4, 4))


def test_attention_pooling_head_matches_torch_multihead_attention():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 5, 12)).astype("float32")
    head = AttentionPoolingHead(12, 3, 20)
    head.build((None, 5, 12))
    mha = torch.nn.MultiheadAttention(12, 3, batch_first=True)
    att = head.attention
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.tensor(np.concatenate(
            [_np(d.kernel).T for d in (att.query, att.key, att.value)])))
        mha.in_proj_bias.copy_(torch.tensor(np.concatenate(
            [_np(d.bias) for d in (att.query, att.key, att.value)])))
        mha.out_proj.weight.copy_(torch.tensor(_np(att.output_dense.kernel).T))
        mha.out_proj.bias.copy_(torch.tensor(_np(att.output_dense.bias)))
        probe = torch.tensor(_np(head.probe)).repeat(2, 1, 1)
        h = mha(probe, torch.tensor(x), torch.tensor(x))[0].numpy()
    ln = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-6)
    ln = ln * _np(head.layer_norm.gamma) + _np(head.layer_norm.beta)
    expected = (h + _np(head.mlp(ln)))[:, 0]
    np.testing.assert_allclose(_np(head(x)), expected, atol=1e-5)


@pytest.mark.parametrize(
    "layer, shape",
    [
        (MLP(8, 16, "quick_gelu"), (None, 3, 8)),
        (MultiHeadAttention(8, 2), (None, 3, 8)),
        (TransformerEncoderBlock(8, 2, 16, "gelu", 1e-5), (None, 3, 8)),
        (TransformerEncoder(2, 8, 2, 16, "gelu_tanh"), (None, 3, 8)),
        (AttentionPoolingHead(8, 2, 16), (None, 3, 8)),
        (PatchEmbedding(8, 4, use_bias=False), (None, 8, 8, 3)),
        (PositionEmbedding(3, 8), (None, 3, 8)),
    ],
)
def test_layer_config_round_trip(layer, shape):
    layer.build(shape)
    clone = layer.__class__.from_config(layer.get_config())
    clone.build(shape)
    assert clone.get_config() == layer.get_config()
    clone.set_weights(layer.get_weights())
    x = np.random.default_rng(5).normal(size=(2,) + shape[1:]).astype("float32")
    np.testing.assert_allclose(_np(clone(x)), _np(layer(x)), atol=1e-6)


def test_encoder_hidden_states_are_the_block_outputs():
    encoder = TransformerEncoder(3, 8, 2, 16)
    encoder.build((None, 4, 8))
    x = np.random.default_rng(6).normal(size=(2, 4, 8)).astype("float32")
    out, states = encoder(x, return_hidden_states=True)
    assert len(states) == 4
    np.testing.assert_array_equal(_np(states[0]), x)
    expected = x
    for block, state in zip(encoder.blocks, states[1:]):
        expected = _np(block(expected))
        np.testing.assert_allclose(_np(state), expected, atol=1e-6)
    np.testing.assert_array_equal(_np(out), _np(states[-1]))
