"""examples/llava_projector_training.py in a small configuration: only the projector
trains, and its loss falls."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import numpy as np

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "llava_projector_training.py"


def test_llava_example_trains_only_the_projector():
    spec = importlib.util.spec_from_file_location("llava_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    model, tower, projector, backbone, image_token_id = example.build(seed=0)
    frozen = {w.path: keras.ops.convert_to_numpy(w).copy() for w in tower.weights + backbone.weights}
    x = example.synthetic_data(16, 32, tower.num_tokens, image_token_id)
    y = keras.ops.convert_to_numpy(model.connector(x)["labels"])[:, 1:]
    before = [keras.ops.convert_to_numpy(w).copy() for w in projector.weights]
    assert projector.weights
    assert (y[:, : tower.num_tokens - 1] == -100).all()   # image positions are ignored
    model({k: v[:2] for k, v in x.items()})  # build eagerly before fit
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=-100))
    history = model.fit(x, y, batch_size=8, epochs=8, verbose=0).history["loss"]
    assert history[-1] < history[0] - 0.05, history
    assert {w.path for w in model.trainable_weights} == {w.path for w in projector.weights}
    for w in tower.weights + backbone.weights:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), frozen[w.path])
    assert any(not np.allclose(keras.ops.convert_to_numpy(w), b) for w, b in zip(projector.weights, before))


def test_llava_example_main_runs():
    spec = importlib.util.spec_from_file_location("llava_example_main", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    _, history = example.main(["--steps", "2", "--samples", "8", "--projector", "qformer"])
    assert len(history) == 2 and np.isfinite(history).all()
