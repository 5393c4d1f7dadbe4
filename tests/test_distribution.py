"""kvmm.distribution on JAX with 8 virtual CPU devices: sharded results equal single-device
results (and transformers'), and a fine-tuning step runs sharded with the same result.

The sharded runs need ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before JAX
starts, so they run in a fresh process: this file, run as a script (``_worker`` below).
keras.distribution is implemented for JAX only: on TensorFlow and PyTorch the sharded
tests skip and the helpers must refuse with a clear error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

JAX_ONLY = "keras.distribution is implemented by Keras for the JAX backend only"
DEVICES = 8


# --------------------------------------------------------------------------------------
# The worker (a fresh process with 8 virtual devices)
# --------------------------------------------------------------------------------------
def _train_step(model, images, token_ids):
    """One SGD step on a plain Keras loss over the logits (matching pairs on the diagonal)."""
    import keras

    loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.5),
        loss={"image_logits": loss, "text_logits": loss},
    )
    eye = np.eye(len(images), dtype="float32")
    history = model.fit(
        {"images": images, "token_ids": token_ids},
        {"image_logits": eye, "text_logits": eye},
        batch_size=len(images), epochs=1, shuffle=False, verbose=0,
    )
    watched = ("vision_model/encoder/block_0/mlp/fc1/kernel",
               "text_model/encoder/block_1/attention/output/kernel",
               "vision_model/patch_embedding/projection/kernel")
    weights = {w.path: np.asarray(w.value).tolist() for w in model.weights if w.path in watched}
    return float(history.history["loss"][0]), weights


def _worker(folder: str, out: str) -> None:
    import jax
    import keras

    import kvmm.distribution as kd
    from tiny_family import build_tiny

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (10, 32, 32, 3)).astype("float32")  # 10: not a multiple of 8
    token_ids = rng.integers(2, 120, (6, 12)).astype("int32")
    token_ids[:, -3:] = 1
    report = {"devices": len(jax.devices())}
    modes = {
        "single": None,
        "data_parallel": kd.data_parallel(),
        "model_parallel": kd.model_parallel(model_axis_size=2),
    }
    for mode, distribution in modes.items():
        keras.distribution.set_distribution(distribution)
        try:
            model = build_tiny(weights=folder)
            specs = {
                w.path: [str(a) for a in getattr(w.value.sharding, "spec", ())]
                for w in model.weights
                if w.path.endswith(("block_0/mlp/fc1/kernel", "block_0/attention/output/kernel",
                                    "token_embedding/embeddings"))
            }
            out_images = model.encode_images(images, batch_size=4)
            out_texts = model.encode_texts(token_ids, batch_size=4)
            loss, weights = _train_step(model, images[:8], token_ids[:6].repeat(2, 0)[:8])
        finally:
            keras.distribution.set_distribution(None)
        report[mode] = {
            "specs": specs,
            "image_embeddings": out_images.tolist(),
            "text_embeddings": out_texts.tolist(),
            "loss": loss,
            "weights": weights,
        }
    Path(out).write_text(json.dumps(report))




# --------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------
import keras  # noqa: E402
import pytest  # noqa: E402

import hf_checkpoints as hfc  # noqa: E402
import kvmm.distribution as kd  # noqa: E402
from tiny_family import build_clip_tiny, build_tiny  # noqa: E402

on_jax = pytest.mark.skipif(keras.backend.backend() != "jax", reason=JAX_ONLY)


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="checks the non-JAX refusal")
def test_helpers_refuse_other_backends():
    for helper in (kd.data_parallel, kd.model_parallel):
        with pytest.raises(RuntimeError, match="JAX backend"):
            helper()


@on_jax
@pytest.mark.parametrize("build", [build_tiny, build_clip_tiny], ids=["siglip", "clip"])
def test_layout_map_covers_every_big_kernel(build):
    """Each attention / MLP kernel (and the token embedding) of every tower gets exactly one
    split layout; LayerNorms, position embeddings and the like stay replicated."""
    mesh = keras.distribution.DeviceMesh((1, 1), ("batch", "model"),
                                         keras.distribution.list_devices()[:1])
    layouts = kd.layout_map(mesh)
    model = build()
    split = {w.path for w in model.weights if layouts[w.path] is not None}
    big = {w.path for w in model.weights
           if ("/attention/" in w.path or "/mlp/" in w.path) and w.path.endswith("kernel")}
    assert big <= split
    assert any(p.endswith("token_embedding/embeddings") for p in split)
    assert not any("layer_norm" in p or "position_embedding" in p for p in split)
    for w in model.weights:
        layout = layouts[w.path]
        if layout is not None:
            assert len(layout.axes) == len(w.shape), w.path
            axis = layout.axes.index("model")
            assert w.shape[axis] % 2 == 0, w.path


@on_jax
def test_model_parallel_rejects_a_bad_axis_size():
    with pytest.raises(ValueError, match="must divide"):
        kd.model_parallel(model_axis_size=len(keras.distribution.list_devices()) + 1)


@on_jax
def test_sharded_equals_single_device(tmp_path):
    folder = hfc.save_checkpoint(hfc.build_siglip(hfc.TINY), tmp_path / "ckpt")
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (10, 32, 32, 3)).astype("float32")
    token_ids = rng.integers(2, 120, (6, 12)).astype("int32")
    token_ids[:, -3:] = 1
    reference = hfc.reference_outputs(hfc.build_siglip(hfc.TINY), images, token_ids)

    out = tmp_path / "report.json"
    env = dict(os.environ, KERAS_BACKEND="jax", HF_HUB_OFFLINE="1",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES}",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), *sys.path]))
    run = subprocess.run([sys.executable, __file__, str(folder), str(out)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["devices"] == DEVICES

    single = report["single"]
    np.testing.assert_allclose(single["image_embeddings"], reference["image_embeds"], atol=2e-5)
    np.testing.assert_allclose(single["text_embeddings"], reference["text_embeds"], atol=2e-5)
    fc1 = "vision_model/encoder/block_0/mlp/fc1/kernel"
    out_proj = "vision_model/encoder/block_0/attention/output/kernel"
    assert report["data_parallel"]["specs"][fc1] == ["None", "None"]  # replicated
    assert report["model_parallel"]["specs"][fc1] == ["None", "model"]
    assert report["model_parallel"]["specs"][out_proj] == ["model", "None"]
    for mode in ("data_parallel", "model_parallel"):
        sharded = report[mode]
        for key in ("image_embeddings", "text_embeddings"):
            np.testing.assert_allclose(sharded[key], single[key], atol=1e-5, err_msg=mode)
        # The fine-tuning step ran sharded and moved the weights exactly as on one device.
        assert np.isfinite(sharded["loss"])
        np.testing.assert_allclose(sharded["loss"], single["loss"], rtol=1e-5, err_msg=mode)
        for path, value in single["weights"].items():
            np.testing.assert_allclose(sharded["weights"][path], value, atol=1e-5,
                                       err_msg=f"{mode}: {path}")
    # ... and the step did change them (the comparison above is not trivially true).
    model = build_tiny(weights=str(folder))
    before = {w.path: np.asarray(w.value) for w in model.weights}
    assert any(np.abs(np.asarray(v) - before[p]).max() > 1e-4
               for p, v in single["weights"].items())


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
