"""Fine-tuning with plain Keras: compile + fit with the image-text losses, one forward pass
per step, a locked tower (LiT), LoRA, .keras round trip mid-training, mixed precision."""

import keras
import numpy as np
import pytest

from kvmm.losses import ContrastiveLoss, SigmoidLoss
from kvmm.training import enable_lora, lock_tower
from tiny_family import build_clip_tiny, build_tiny


def pairs(model, count=8, seed=0):
    """A fixed set of image-text pairs the tiny model can learn to match."""
    rng = np.random.default_rng(seed)
    size = model.image_size
    images = rng.uniform(-1, 1, size=(count, size, size, 3)).astype("float32")
    token_ids = rng.integers(2, model.vocabulary_size, size=(count, model.max_text_length))
    return {"images": images, "token_ids": token_ids.astype("int32")}


def as_numpy(variables):
    return {v.path: keras.ops.convert_to_numpy(v).copy() for v in variables}


FAMILIES = {
    "siglip": (lambda **kw: build_tiny(**kw), SigmoidLoss),
    "clip": (lambda **kw: build_clip_tiny(**kw), ContrastiveLoss),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fit_lowers_the_loss(family):
    build, loss = FAMILIES[family]
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss())
    history = model.fit(pairs(model), batch_size=8, epochs=12, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses
    evaluated = model.evaluate(pairs(model), batch_size=8, verbose=0)
    assert np.isfinite(evaluated)


def test_one_forward_pass_per_step():
    keras.utils.set_random_seed(0)
    model = build_tiny()
    calls = {"vision": 0, "text": 0}
    for tower in ("vision", "text"):
        layer = getattr(model, f"{tower}_model")
        original = layer.call

        def counted(*args, _original=original, _tower=tower, **kwargs):
            calls[_tower] += 1
            return _original(*args, **kwargs)

        layer.call = counted
    model.compile(optimizer="sgd", loss=SigmoidLoss(), run_eagerly=True)
    data = pairs(model, count=2)

    def calls_of_fit(epochs):
        calls.update(vision=0, text=0)
        model.fit(data, batch_size=2, epochs=epochs, verbose=0)
        return dict(calls)

    # fit may trace the model symbolically once when it starts (no computation); every
    # training step then runs each tower exactly once.
    one_step, three_steps = calls_of_fit(1), calls_of_fit(3)
    assert {k: three_steps[k] - one_step[k] for k in calls} == {"vision": 2, "text": 2}
    assert one_step["vision"] <= 2


def test_labels_are_refused_for_pairwise_losses():
    model = build_tiny()
    model.compile(optimizer="sgd", loss=SigmoidLoss())
    data = pairs(model, count=4)
    with pytest.raises(ValueError, match="without y"):
        model.fit(data, np.zeros(4), batch_size=4, epochs=1, verbose=0)


def test_locked_image_tower_does_not_change():
    keras.utils.set_random_seed(1)
    model = build_tiny()
    lock_tower(model, "vision")
    vision_before = as_numpy(model.vision_model.weights)
    text_before = as_numpy(model.text_model.weights)
    assert not model.vision_model.trainable_weights
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SigmoidLoss())
    model.fit(pairs(model), batch_size=8, epochs=2, verbose=0)
    for path, value in as_numpy(model.vision_model.weights).items():
        np.testing.assert_array_equal(value, vision_before[path], err_msg=path)
    changed = [p for p, v in as_numpy(model.text_model.weights).items()
               if not np.array_equal(v, text_before[p])]
    assert len(changed) == len(text_before)


def test_lora_trains_only_the_low_rank_factors():
    keras.utils.set_random_seed(2)
    model = build_tiny()
    enabled = enable_lora(model, rank=2, targets=("query", "value"))
    # (query, value) x 2 layers x 2 towers, plus the query and value of the MAP head
    assert len(enabled) == 2 * 2 * 2 + 2
    trainable = {v.path for v in model.trainable_weights}
    assert trainable and all("lora_kernel" in p for p in trainable), sorted(trainable)
    before = as_numpy(model.weights)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=SigmoidLoss())
    history = model.fit(pairs(model), batch_size=8, epochs=6, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    after = as_numpy(model.weights)
    for path, value in before.items():
        if path in trainable and path.endswith("lora_kernel_b"):
            assert not np.array_equal(after[path], value), path
        elif path not in trainable:
            np.testing.assert_array_equal(after[path], value, err_msg=path)
    with pytest.raises(ValueError, match="Unknown LoRA targets"):
        enable_lora(build_tiny(), rank=2, targets=("qkv",))


def test_keras_round_trip_mid_training_continues_identically(tmp_path):
    keras.utils.set_random_seed(3)
    model = build_tiny()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SigmoidLoss())
    data = pairs(model)
    model.fit(data, batch_size=8, epochs=2, verbose=0, shuffle=False)
    path = tmp_path / "mid.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.loss, SigmoidLoss)
    assert int(restored.optimizer.iterations) == int(model.optimizer.iterations) == 2
    first = model.fit(data, batch_size=8, epochs=2, verbose=0, shuffle=False).history["loss"]
    second = restored.fit(data, batch_size=8, epochs=2, verbose=0, shuffle=False).history["loss"]
    np.testing.assert_allclose(second, first, rtol=1e-5)
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(b), keras.ops.convert_to_numpy(a), atol=1e-6, err_msg=a.path
        )


def test_mixed_bfloat16_fit_keeps_a_float32_loss():
    keras.utils.set_random_seed(4)
    model = build_clip_tiny(dtype="mixed_bfloat16")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=ContrastiveLoss())
    history = model.fit(pairs(model), batch_size=8, epochs=3, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(v.dtype == "float32" for v in model.trainable_weights)
    out = model(pairs(model, count=2))
    assert keras.backend.standardize_dtype(out["text_logits"].dtype) == "float32"
