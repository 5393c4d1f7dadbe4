"""kvmm.projectors: shapes, factory keys, serialization, fit, mixed precision, LLaVA
checkpoints written by PyTorch, Q-Former / Perceiver against PyTorch references."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kvmm.errors import WeightsError
from kvmm.projectors import (
    GatedProjector,
    IdentityProjector,
    MLPProjector,
    PerceiverProjector,
    QFormerProjector,
    build_projector,
    load_llava_projector,
)

IN_DIM, OUT_DIM = 12, 8


def _features(batch=2, tokens=5, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, tokens, IN_DIM)).astype("float32")


def _np(x):
    return keras.ops.convert_to_numpy(x)


FACTORY = [
    ({"mm_projector_type": "mlp2x_gelu", "mm_hidden_size": IN_DIM, "hidden_size": OUT_DIM}, MLPProjector, 5),
    ({"mm_projector_type": "linear", "hidden_size": OUT_DIM}, MLPProjector, 5),
    ({"projector_type": "mlp", "depth": 3, "output_dim": OUT_DIM}, MLPProjector, 5),
    ({"projector_type": "qformer", "num_query_tokens": 3, "hidden_size": OUT_DIM, "num_heads": 2}, QFormerProjector, 3),
    ({"projector_type": "perceiver", "num_latents": 4, "hidden_size": OUT_DIM, "num_heads": 2}, PerceiverProjector, 4),
    ({"projector_type": "gated", "hidden_size": OUT_DIM}, GatedProjector, 5),
]


@pytest.mark.parametrize("config,cls,length", FACTORY)
def test_factory_keys_and_shapes(config, cls, length):
    projector = build_projector(config)
    assert type(projector) is cls
    assert tuple(projector(_features()).shape) == (2, length, OUT_DIM)
    if "depth" in config or "mlp2x" in config.get("mm_projector_type", "") or config.get("mm_projector_type") == "linear":
        expected = {"linear": 1, "mlp2x_gelu": 2}.get(config.get("mm_projector_type"), config.get("depth"))
        assert len(projector.dense_layers) == expected


def test_identity_and_bad_configs():
    x = _features()
    np.testing.assert_array_equal(_np(IdentityProjector()(x)), x)
    assert type(build_projector({"mm_projector_type": "identity"})) is IdentityProjector
    with pytest.raises(ValueError, match="width 12 to 8: the widths must be equal"):
        IdentityProjector(OUT_DIM)(x)
    with pytest.raises(ValueError, match="Unknown projector type 'mlp2x_relu'"):
        build_projector({"mm_projector_type": "mlp2x_relu", "hidden_size": 4})
    with pytest.raises(ValueError, match="needs the language model's width"):
        build_projector({"projector_type": "qformer"})


@pytest.mark.parametrize("config,cls,length", FACTORY)
def test_keras_round_trip(config, cls, length, tmp_path):
    inputs = keras.Input((5, IN_DIM))
    model = keras.Model(inputs, build_projector(config)(inputs))
    x = _features(seed=1)
    before = _np(model(x))
    model.save(tmp_path / "p.keras")
    restored = keras.models.load_model(tmp_path / "p.keras")
    np.testing.assert_allclose(_np(restored(x)), before, atol=1e-6)
    layer = restored.layers[-1]
    assert type(layer) is cls
    assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()


@pytest.mark.parametrize("config,cls,length", FACTORY)
def test_trains_in_fit(config, cls, length):
    """A synthetic task: regress a fixed random linear map of the features."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5, IN_DIM)).astype("float32")
    target_map = rng.normal(size=(IN_DIM, OUT_DIM)).astype("float32") / 3
    if length == x.shape[1]:  # token-wise projectors: map each token
        y = x @ target_map
    else:  # query projectors: every query predicts the map of the mean token
        y = np.repeat((x.mean(1) @ target_map)[:, None], length, axis=1)
    inputs = keras.Input((5, IN_DIM))
    model = keras.Model(inputs, build_projector(config)(inputs))
    model.compile(keras.optimizers.Adam(3e-2), loss="mse")
    history = model.fit(x, y, batch_size=16, epochs=10, verbose=0).history["loss"]
    assert history[-1] < 0.7 * history[0], history


@pytest.mark.parametrize("config,cls,length", FACTORY)
def test_mixed_bfloat16(config, cls, length):
    projector = build_projector({**config, "name": "p"})
    projector = cls.from_config({**projector.get_config(), "dtype": "mixed_bfloat16"})
    out = projector(_features())
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    assert all(keras.backend.standardize_dtype(w.dtype) == "float32" for w in projector.weights)
    assert np.isfinite(_np(keras.ops.cast(out, "float32"))).all()


# --- LLaVA mm_projector checkpoints ---------------------------------------------------
def _llava_module(depth, seed=0):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(IN_DIM, 10)]
    for _ in range(depth - 1):
        layers += [torch.nn.GELU(), torch.nn.Linear(layers[-1].out_features if isinstance(layers[-1], torch.nn.Linear) else 10, 10)]
    return torch.nn.Sequential(*layers).eval()


@pytest.mark.parametrize("fmt", ["bin", "safetensors"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_llava_checkpoint_matches_torch(tmp_path, fmt, depth):
    module = _llava_module(depth, seed=depth)
    state = {f"model.mm_projector.{k}": v for k, v in module.state_dict().items()}
    path = tmp_path / f"mm_projector.{fmt}"
    if fmt == "bin":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    x = _features(seed=3)
    with torch.no_grad():
        expected = module(torch.tensor(x)).numpy()
    projector = load_llava_projector(path)          # built from the checkpoint
    assert projector.depth == depth
    np.testing.assert_allclose(_np(projector(x)), expected, atol=1e-5)
    # Into a projector from the factory (LLaVA config keys).
    kind = "linear" if depth == 1 else f"mlp{depth}x_gelu"
    built = build_projector({"mm_projector_type": kind, "hidden_size": 10})
    built.build((None, None, IN_DIM))
    load_llava_projector(path, built)
    np.testing.assert_allclose(_np(built(x)), expected, atol=1e-5)


def test_llava_checkpoint_errors(tmp_path):
    module = _llava_module(2)
    state = {f"model.mm_projector.{k}": v for k, v in module.state_dict().items()}
    path = tmp_path / "mm_projector.bin"
    torch.save(state, path)
    wrong_depth = MLPProjector(10, depth=3)
    wrong_depth.build((None, None, IN_DIM))
    with pytest.raises(WeightsError, match="2-layer MLP projector"):
        load_llava_projector(path, wrong_depth)
    wrong_width = MLPProjector(10, depth=2)
    wrong_width.build((None, None, IN_DIM + 1))
    with pytest.raises(WeightsError, match="model.mm_projector.0.weight has shape"):
        load_llava_projector(path, wrong_width)
    del state["model.mm_projector.2.bias"]
    torch.save(state, path)
    with pytest.raises(WeightsError, match="missing.*model.mm_projector.2.bias"):
        load_llava_projector(path)
    with pytest.raises(WeightsError, match="No such projector checkpoint"):
        load_llava_projector(tmp_path / "nope.bin")


# --- Q-Former / Perceiver against PyTorch references ----------------------------------
def _weights(layer):
    # Paths relative to the projector (its own name, and any scope Keras adds, dropped).
    queries = next(w.path for w in layer.weights if w.path.split("/")[-1] == "queries")
    prefix = queries[: -len("queries")]
    return {w.path[len(prefix):]: torch.tensor(_np(w)) for w in layer.weights}


def _dense(w, name, x):
    return x @ w[f"{name}/kernel"] + w[f"{name}/bias"]


def _ln(w, name, x):
    return F.layer_norm(x, x.shape[-1:], w[f"{name}/gamma"], w[f"{name}/beta"], eps=1e-5)


def _attention(w, name, q_in, kv_in, heads, mask=None):
    def split(t):
        b, n, d = t.shape
        return t.reshape(b, n, heads, d // heads).transpose(1, 2)

    q, k, v = (split(_dense(w, f"{name}/{p}", t)) for p, t in (("query", q_in), ("key", kv_in), ("value", kv_in)))
    attn_mask = None if mask is None else mask[:, None, None, :].bool()
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    b, h, n, d = out.shape
    return _dense(w, f"{name}/output", out.transpose(1, 2).reshape(b, n, h * d))


def _mlp(w, name, x):
    return _dense(w, f"{name}/fc2", F.gelu(_dense(w, f"{name}/fc1", x)))


def _qformer_reference(w, x, layers, heads, mask):
    q = w["queries"][None].expand(x.shape[0], -1, -1)
    for i in range(layers):
        q = q + _attention(w, f"self_attention_{i}", _ln(w, f"self_norm_{i}", q), _ln(w, f"self_norm_{i}", q), heads)
        q = q + _attention(w, f"cross_attention_{i}", _ln(w, f"cross_norm_{i}", q), x, heads, mask)
        q = q + _mlp(w, f"mlp_{i}", _ln(w, f"mlp_norm_{i}", q))
    return _dense(w, "output", _ln(w, "final_norm", q))


def _perceiver_reference(w, x, layers, heads, mask):
    lat = w["queries"][None].expand(x.shape[0], -1, -1)
    f = _dense(w, "input", x)
    full_mask = None
    if mask is not None:
        full_mask = torch.cat([mask.bool(), torch.ones(x.shape[0], lat.shape[1], dtype=torch.bool)], 1)
    for i in range(layers):
        normed = _ln(w, f"latent_norm_{i}", lat)
        kv = torch.cat([_ln(w, f"feature_norm_{i}", f), normed], 1)
        lat = lat + _attention(w, f"attention_{i}", normed, kv, heads, full_mask)
        lat = lat + _mlp(w, f"mlp_{i}", _ln(w, f"mlp_norm_{i}", lat))
    return _dense(w, "output", _ln(w, "final_norm", lat))


@pytest.mark.parametrize("cls,reference", [(QFormerProjector, _qformer_reference),
                                           (PerceiverProjector, _perceiver_reference)])
def test_query_projectors_match_torch_reference_with_masking(cls, reference):
    keras.utils.set_random_seed(1)
    projector = cls(OUT_DIM, num_queries=3, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16)
    x = _features(batch=2, tokens=6, seed=4)
    mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], "int32")
    out = _np(projector(x, padding_mask=mask))
    assert out.shape == (2, 3, OUT_DIM)
    w = _weights(projector)
    with torch.no_grad():
        expected = reference(w, torch.tensor(x), 2, 2, torch.tensor(mask)).numpy()
        unmasked = reference(w, torch.tensor(x), 2, 2, None).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(_np(projector(x)), unmasked, atol=1e-5)
    # Masked tokens do not matter: changing them leaves the output unchanged.
    x2 = x.copy()
    x2[1, 3:] = 100.0
    np.testing.assert_allclose(_np(projector(x2, padding_mask=mask)), out, atol=1e-5)
    assert not np.allclose(_np(projector(x2)), _np(projector(x)), atol=1e-3)
