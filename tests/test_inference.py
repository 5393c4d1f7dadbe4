"""Inference path: compiled once per input shape, and bfloat16 within a stated tolerance.

* ``encode_images`` / ``encode_texts`` run Keras' ``predict``: on JAX a ``jax.jit``-compiled
  step; on TensorFlow one ``tf.function`` graph per tower called from a plain loop (not
  ``predict``'s ``tf.data`` pipeline): the tower's ``call`` is traced once per
  input shape and never again for repeated calls of that shape. PyTorch runs eagerly (no
  compilation, nothing to repeat): ``call`` runs once per batch.
* bfloat16 (``dtype="bfloat16"`` or the ``"mixed_bfloat16"`` policy): embeddings within
  cosine 0.99 of float32 (docs/performance.md states this tolerance).
* The fast load path (variables initialised straight from the checkpoint, no zero fill)
  gives every variable its declared shape and value, and round-trips through
  ``.weights.h5`` (the cached load) on every backend.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import hf_checkpoints as hfc
from tiny_family import build_clip_tiny, build_tiny

BACKEND = keras.backend.backend()
BF16_MIN_COSINE = 0.99  # stated in docs/performance.md


def _count_calls(layer) -> list:
    """Make ``layer.call`` record its Python executions (= traces when compiled): one entry
    per call, the inputs' leading (batch) dimension."""
    calls = []
    original = layer.call

    def counting(*args, **kwargs):
        calls.append(tuple(getattr(args[0], "shape", (None,)))[0])
        return original(*args, **kwargs)

    layer.call = counting
    return calls


@pytest.mark.parametrize("build", [build_tiny, build_clip_tiny], ids=["siglip", "clip"])
def test_repeated_calls_do_not_recompile(build):
    model = build()
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
    token_ids = rng.integers(2, model.vocabulary_size - 1, (8, model.max_text_length))
    vision, text = _count_calls(model.vision_model), _count_calls(model.text_model)

    first_images = model.encode_images(images, batch_size=4)
    first_texts = model.encode_texts(token_ids, batch_size=4)
    traced = len(vision), len(text)
    for _ in range(3):
        np.testing.assert_allclose(model.encode_images(images, batch_size=4), first_images,
                                   atol=1e-6)
        np.testing.assert_allclose(model.encode_texts(token_ids, batch_size=4), first_texts,
                                   atol=1e-6)
    if BACKEND == "torch":
        # Eager: the tower runs once per batch (2 batches per call), nothing is compiled.
        assert (len(vision), len(text)) == (8, 8)
    else:
        assert 1 <= traced[0] <= 2 and 1 <= traced[1] <= 2, traced
        assert (len(vision), len(text)) == traced, "repeated calls traced the tower again"


def test_large_batches_run_in_token_capped_passes_on_cpu(monkeypatch):
    """On a CPU device (JAX, PyTorch) a batch is split into equal passes of at most
    CPU_TOKENS_PER_CALL tokens (cache and fresh-memory cost, see dual_encoder._cpu_rows);
    the embeddings equal one full pass on every backend."""
    from kvmm.models import dual_encoder

    model = build_tiny()
    rng = np.random.default_rng(3)
    images = rng.uniform(-1, 1, (6, 32, 32, 3)).astype("float32")
    token_ids = rng.integers(2, model.vocabulary_size - 1, (6, model.max_text_length))
    whole_images = model.encode_images(images, batch_size=6)
    whole_texts = model.encode_texts(token_ids, batch_size=6)
    tokens_per_image = model.vision_model.num_tokens
    # 5 images a pass at most: 6 images run as 2 passes of 3 (equal passes, not 5 + 1)
    monkeypatch.setattr(dual_encoder, "CPU_TOKENS_PER_CALL", 5 * tokens_per_image)
    vision, text = _count_calls(model.vision_model), _count_calls(model.text_model)
    np.testing.assert_allclose(model.encode_images(images, batch_size=6), whole_images,
                               atol=1e-6)
    monkeypatch.setattr(dual_encoder, "CPU_TOKENS_PER_CALL", 3 * model.max_text_length)
    np.testing.assert_allclose(model.encode_texts(token_ids, batch_size=6), whole_texts,
                               atol=1e-6)
    if BACKEND == "torch":
        assert (len(vision), len(text)) == (2, 2)  # passes of 3 images, of 3 texts
        assert set(vision + text) == {3}
    elif BACKEND == "jax":
        # predict traces once per new batch shape: one trace each, of 3 rows
        assert vision + text == [3, 3], (vision, text)
    elif BACKEND == "tensorflow":
        assert (len(vision), len(text)) == (0, 0)  # the full batch's graph, already traced


def test_encode_follows_lora_enabled_after_a_first_call():
    """The compiled inference step (TensorFlow: kvmm's own tf.function per tower) must not
    keep serving the graph traced before enable_lora added variables."""
    from kvmm.training import enable_lora

    model = build_tiny()
    images = np.random.default_rng(4).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    before = model.encode_images(images, batch_size=2)
    for layer in enable_lora(model, rank=2, towers=("vision",)):
        layer.lora_kernel_b.assign(np.full(tuple(layer.lora_kernel_b.shape), 0.05, "float32"))
    direct = keras.ops.convert_to_numpy(model.vision_model(images))
    direct = direct / np.linalg.norm(direct, axis=-1, keepdims=True)
    after = model.encode_images(images, batch_size=2)
    assert np.abs(after - before).max() > 1e-4  # LoRA changed the embeddings
    np.testing.assert_allclose(after, direct, atol=1e-5)


def test_empty_input_gives_empty_embeddings():
    model = build_tiny()
    assert model.encode_images(np.zeros((0, 32, 32, 3), "float32")).shape == (
        0, model.embedding_dim)
    assert model.encode_texts(np.zeros((0, 8), "int32")).shape == (0, model.embedding_dim)


def test_predict_is_compiled_on_jax_and_tensorflow():
    model = build_tiny()
    images = np.random.default_rng(2).uniform(-1, 1, (5, 32, 32, 3)).astype("float32")
    first = model.encode_images(images, batch_size=2)
    if BACKEND == "tensorflow":
        # A plain loop over one tf.function per tower replaces Keras' predict loop (see
        # kvmm.models.dual_encoder._tensorflow_predict); it gives predict's numbers.
        import tensorflow as tf
        from kvmm.models.dual_encoder import _tensorflow_step

        step = _tensorflow_step(model.vision_model)
        assert isinstance(step, tf.types.experimental.PolymorphicFunction)
        model.encode_images(images, batch_size=2)
        assert _tensorflow_step(model.vision_model) is step  # made once, reused
        expected = model.vision_model.predict(images, batch_size=2, verbose=0)
        expected /= np.linalg.norm(expected, axis=-1, keepdims=True)
        np.testing.assert_allclose(first, expected, atol=1e-6)
        return
    predict_function = model.vision_model.predict_function
    assert predict_function is not None
    model.encode_images(images, batch_size=2)
    assert model.vision_model.predict_function is predict_function  # made once, reused
    if BACKEND == "jax":
        assert model.vision_model.jit_compile  # XLA


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return hfc.save_checkpoint(hfc.build_siglip(hfc.TINY, scale=0.05),
                               tmp_path_factory.mktemp("bf16") / "ckpt")


def _cosines(a, b):
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_sublayers_called_directly_in_torch_inference_give_the_same_embeddings(
        monkeypatch, dtype):
    """On PyTorch, inference (no autograd) calls the encoders' built sublayers' ``call``
    directly, skipping Keras' ``Layer.__call__`` (kvmm.layers.sublayer); the embeddings are
    exactly those of the full ``__call__`` path, also under a mixed policy (autocast). With
    autograd on, and for a layer with a forward hook, ``__call__`` runs as usual. Other
    backends always take ``__call__``."""
    from kvmm.layers import sublayer

    model = build_tiny(dtype=dtype)
    rng = np.random.default_rng(7)
    images = rng.uniform(-1, 1, (3, 32, 32, 3)).astype("float32")
    token_ids = rng.integers(2, model.vocabulary_size - 1, (3, model.max_text_length))
    calls = []
    original = keras.Layer.__call__

    def counting(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras.Layer, "__call__", counting)
    direct = model.encode_images(images), model.encode_texts(token_ids)
    direct_calls = len(calls)
    # The check exists on PyTorch only (other backends always take ``__call__``).
    monkeypatch.setattr(sublayer, "_direct_call_is_safe", lambda layer, x: False,
                        raising=False)
    calls.clear()
    full = model.encode_images(images), model.encode_texts(token_ids)
    for a, b in zip(direct, full):
        np.testing.assert_array_equal(a, b)
    if BACKEND == "torch":
        assert direct_calls < len(calls) // 2, (direct_calls, len(calls))
        monkeypatch.undo()
        monkeypatch.setattr(keras.Layer, "__call__", counting)
        import torch

        block = model.text_model.encoder.blocks[0]
        seen = []
        handle = block.register_forward_hook(lambda module, args, output: seen.append(1))
        try:
            model.encode_texts(token_ids)
            assert seen, "the hooked block was not called through __call__"
        finally:
            handle.remove()
        calls.clear()
        with torch.enable_grad():
            model.text_model(keras.ops.convert_to_tensor(token_ids))
        assert calls.count("Dense") >= 4 * len(model.text_model.encoder.blocks)


@pytest.mark.parametrize("dtype", ["bfloat16", "mixed_bfloat16"])
def test_bfloat16_stays_close_to_float32(tiny_checkpoint, dtype):
    from tiny_family import TINY_FAMILY
    from kvmm.loading import create_model

    rng = np.random.default_rng(1)
    images, token_ids = hfc.random_inputs(rng, 32, 6, 6, 12, 120)
    full = build_tiny(weights=str(tiny_checkpoint))
    half = create_model(TINY_FAMILY, "SigLIPTiny", weights=str(tiny_checkpoint), dtype=dtype)
    expected_variable_dtype = "bfloat16" if dtype == "bfloat16" else "float32"
    assert {w.dtype for w in half.weights} == {expected_variable_dtype}
    for encode, x in (("encode_images", images), ("encode_texts", token_ids)):
        reference = getattr(full, encode)(x)
        result = getattr(half, encode)(x)
        assert result.dtype == np.float32
        cosines = _cosines(result, reference)
        assert cosines.min() > BF16_MIN_COSINE, (encode, cosines)
        assert np.abs(result - reference).max() > 1e-6  # bfloat16 really ran
    out = half({"images": images, "token_ids": token_ids})
    assert keras.backend.standardize_dtype(out["image_logits"].dtype) == "float32"


@pytest.mark.parametrize("family", ["siglip", "clip"])
def test_fast_load_keeps_shapes_and_round_trips(tmp_path, family):
    """Scalar variables (CLIP's logit scale) included: the converted model equals a random
    model's declared shapes, equals transformers, and reloads from its .weights.h5."""
    if family == "siglip":
        reference, build = hfc.build_siglip(hfc.TINY), build_tiny
    else:
        reference, build = hfc.build_clip(hfc.CLIP_TINY), build_clip_tiny
    folder = hfc.save_checkpoint(reference, tmp_path / "ckpt")
    model = build(weights=str(folder))
    declared = {w.path: tuple(w.shape) for w in build().weights}
    assert {w.path: tuple(np.shape(w.value)) for w in model.weights} == declared
    params = dict(reference.named_parameters())
    scale = keras.ops.convert_to_numpy(model.logit_scale.value)
    np.testing.assert_allclose(scale.reshape(-1),
                               params["logit_scale"].detach().numpy().reshape(-1))

    model.save_weights(str(tmp_path / "m.weights.h5"))
    cached = build(weights=str(tmp_path / "m.weights.h5"))
    for a, b in zip(model.weights, cached.weights):
        assert tuple(np.shape(b.value)) == declared[b.path]
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a.value),
                                      keras.ops.convert_to_numpy(b.value))
    rng = np.random.default_rng(2)
    images = rng.uniform(-1, 1, (3, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(cached.encode_images(images), model.encode_images(images),
                               atol=1e-6)
