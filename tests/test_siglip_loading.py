"""Weight loading: every `weights=` form, the converted cache, and clear errors."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import keras
import numpy as np
import pytest

import hf_checkpoints as hfc
import tiny_family
from kvmm.errors import HubUnavailableError, WeightsError
from kvmm.loading import save_weights_atomic
from kvmm.models.siglip import SigLIPBaseP16, SigLIPLargeP16, SigLIPSo400mP14
from tiny_family import TINY_REPO, assert_same_model, build_tiny


@pytest.fixture(scope="module")
def tiny_reference():
    return hfc.build_siglip(hfc.TINY, seed=11)


@pytest.fixture
def tiny_folder(tiny_reference, tmp_path):
    return hfc.save_checkpoint(tiny_reference, tmp_path / "tiny")


@pytest.fixture
def tiny_inputs():
    rng = np.random.default_rng(5)
    images = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    token_ids = rng.integers(2, 120, (3, 12)).astype("int32")
    return images, token_ids


def _logits(model, images, token_ids):
    return keras.ops.convert_to_numpy(model({"images": images, "token_ids": token_ids})["image_logits"])


def test_named_weight_converts_once_then_loads_from_cache(
    tiny_reference, tiny_folder, tiny_inputs, hf_cache, kvmm_cache
):
    revision = hfc.install_in_hf_cache(tiny_folder, TINY_REPO, hf_cache)
    ref = hfc.reference_outputs(tiny_reference, *tiny_inputs)["image_logits"]
    first = build_tiny(weights="test_32")
    np.testing.assert_allclose(_logits(first, *tiny_inputs), ref, atol=1e-4)
    cached = list((kvmm_cache / "converted").glob("*.kvmm.safetensors"))
    assert len(cached) == 1 and revision[:10] in cached[0].name
    # The second load must not need (nor read) the original checkpoint.
    (tiny_folder / "model.safetensors").unlink()
    second = build_tiny(weights="test_32")
    np.testing.assert_allclose(_logits(second, *tiny_inputs), ref, atol=1e-4)


def test_hf_prefix_loads_any_repo(tiny_reference, tiny_folder, tiny_inputs, hf_cache):
    hfc.install_in_hf_cache(tiny_folder, "someone/my-siglip", hf_cache)
    model = build_tiny(weights="hf:someone/my-siglip")
    ref = hfc.reference_outputs(tiny_reference, *tiny_inputs)["image_logits"]
    np.testing.assert_allclose(_logits(model, *tiny_inputs), ref, atol=1e-4)


def test_cache_is_keyed_by_resolution(tiny_folder, hf_cache, kvmm_cache):
    hfc.install_in_hf_cache(tiny_folder, TINY_REPO, hf_cache)
    build_tiny(weights="test_32")
    build_tiny(weights="test_32", input_shape=(48, 48, 3))
    assert len(list((kvmm_cache / "converted").glob("*.kvmm.safetensors"))) == 2


def test_damaged_cache_entry_is_reconverted(tiny_folder, tiny_inputs, hf_cache, kvmm_cache):
    hfc.install_in_hf_cache(tiny_folder, TINY_REPO, hf_cache)
    build_tiny(weights="test_32")  # converts and writes the cache entry
    reference = _logits(build_tiny(weights="test_32"), *tiny_inputs)  # from the cache
    (entry,) = (kvmm_cache / "converted").glob("*.kvmm.safetensors")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # truncated
    with pytest.warns(UserWarning, match="converting again"):
        model = build_tiny(weights="test_32")
    np.testing.assert_allclose(_logits(model, *tiny_inputs), reference, atol=1e-6)


def test_interrupted_cache_write_leaves_no_file(tmp_path, monkeypatch):
    model = build_tiny()
    target = tmp_path / "cache" / "model.weights.h5"

    def crash(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half written")
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "save_weights", crash)
    with pytest.raises(KeyboardInterrupt):
        save_weights_atomic(model, target)
    assert list(target.parent.iterdir()) == []


def test_interrupted_conversion_cache_write_leaves_no_file(tiny_folder, hf_cache, kvmm_cache,
                                                           monkeypatch):
    """A named load interrupted while it converts into the cache leaves no file there."""
    from kvmm import loading

    hfc.install_in_hf_cache(tiny_folder, TINY_REPO, hf_cache)

    def crash(tensors, path, on_tensor=None):
        with open(path, "wb") as f:
            f.write(b"half written")
        raise KeyboardInterrupt

    monkeypatch.setattr(loading, "write_safetensors", crash)
    with pytest.raises(KeyboardInterrupt):
        build_tiny(weights="test_32")
    assert list((kvmm_cache / "converted").iterdir()) == []


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cached_load_keeps_values_and_dtype(tiny_folder, tiny_inputs, hf_cache, kvmm_cache,
                                            dtype, recwarn):
    hfc.install_in_hf_cache(tiny_folder, TINY_REPO, hf_cache)
    first = build_tiny(weights="test_32", dtype=dtype)  # converted into the cache
    second = build_tiny(weights="test_32", dtype=dtype)  # from the cache
    in_memory = build_tiny(weights=str(tiny_folder), dtype=dtype)  # cast by the backend
    assert not [w for w in recwarn if "converting again" in str(w.message)]
    for a, b, c in zip(first.weights, second.weights, in_memory.weights):
        assert a.dtype == b.dtype == c.dtype == dtype
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a.value),
                                      keras.ops.convert_to_numpy(b.value))
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a.value),
                                      keras.ops.convert_to_numpy(c.value))


def _mapped_ranges(path) -> list[tuple[int, int]]:
    """Address ranges of this process's memory maps of ``path`` (Linux ``/proc/self/maps``)."""
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() == str(path):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((start, end))
    return ranges


class _DLPackCapsule:
    """What ``np.from_dlpack`` takes: an object handing over a DLPack capsule (CPU)."""

    def __init__(self, capsule):
        self.capsule = capsule

    def __dlpack__(self, *args, **kwargs):
        return self.capsule

    def __dlpack_device__(self):
        return (1, 0)


def _address(variable) -> int:
    value = variable.value
    if keras.backend.backend() == "torch":
        return value.data_ptr()
    if keras.backend.backend() == "tensorflow":  # .numpy() copies; DLPack shares the memory
        import tensorflow as tf

        capsule = tf.experimental.dlpack.to_dlpack(tf.convert_to_tensor(value))
        return np.from_dlpack(_DLPackCapsule(capsule)).ctypes.data
    return value.unsafe_buffer_pointer()


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads Linux /proc/self/maps")
def test_cached_load_uses_the_files_memory_map(tiny_folder, hf_cache, kvmm_cache):
    """A named weight is converted straight into the cache file, and every load, the
    converting one included, uses the file's pages as the variables."""
    hfc.install_in_hf_cache(tiny_folder, TINY_REPO, hf_cache)
    first = build_tiny(weights="test_32")
    (entry,) = (kvmm_cache / "converted").glob("*.kvmm.safetensors")
    second = build_tiny(weights="test_32")
    ranges = _mapped_ranges(entry.resolve())
    for model in (first, second):
        big = [v for v in model.weights if int(np.prod(v.shape)) * 4 % 64 == 0]
        assert len(big) > len(model.weights) / 2
        outside = [v.path for v in big if not any(a <= _address(v) < b for a, b in ranges)]
        assert not outside, f"copied instead of mapped: {outside}"


def test_a_model_from_the_cache_does_not_write_to_it(tiny_folder, tiny_inputs, hf_cache,
                                                      kvmm_cache):
    """Changing the variables (fine-tuning) of a model mapped from the cache file leaves the
    file as it was (copy-on-write), and replacing the file leaves the model as it was."""
    hfc.install_in_hf_cache(tiny_folder, TINY_REPO, hf_cache)
    build_tiny(weights="test_32")  # converts and writes the cache entry
    reference = _logits(build_tiny(weights="test_32"), *tiny_inputs)  # from the cache
    (entry,) = (kvmm_cache / "converted").glob("*.kvmm.safetensors")
    before = entry.read_bytes()
    model = build_tiny(weights="test_32")
    for variable in model.weights:  # in place on PyTorch
        variable.assign(keras.ops.ones(variable.shape, variable.dtype) * 0.5)
    assert entry.read_bytes() == before
    np.testing.assert_array_equal(_logits(build_tiny(weights="test_32"), *tiny_inputs), reference)

    model = build_tiny(weights="test_32")
    from safetensors.numpy import load_file

    from kvmm.loading import write_safetensors

    zeros = {k: np.zeros_like(v) for k, v in load_file(str(entry)).items()}
    write_safetensors(zeros, str(entry) + ".new")
    os.replace(str(entry) + ".new", entry)  # as the cache replaces an entry
    np.testing.assert_array_equal(_logits(model, *tiny_inputs), reference)


def test_a_model_from_a_folder_does_not_depend_on_its_files(tiny_folder, tiny_inputs):
    """Conversion reads the checkpoint through a memory map; the model must own copies of
    every tensor, even those kept as they are (LayerNorms, biases, embeddings)."""
    model = build_tiny(weights=str(tiny_folder))
    reference = _logits(model, *tiny_inputs)
    path = tiny_folder / "model.safetensors"
    header = 8 + int.from_bytes(path.read_bytes()[:8], "little")
    with open(path, "r+b") as f:  # overwritten in place, as a careless save would
        f.seek(header)
        f.write(b"\0" * (path.stat().st_size - header))
    np.testing.assert_array_equal(_logits(model, *tiny_inputs), reference)


def test_cache_files_align_their_tensors_for_zero_copy(tmp_path):
    from safetensors.numpy import load_file

    from kvmm.loading import write_safetensors

    rng = np.random.default_rng(0)
    tensors = {"bias": rng.normal(size=(3,)).astype("float32"),
               "kernel": rng.normal(size=(48, 64)).astype("float32"),
               "scalar": np.array(2.5, "float32"),
               "table": rng.normal(size=(10, 16)).astype("float32")}
    write_safetensors(tensors, str(tmp_path / "t.safetensors"))
    raw = (tmp_path / "t.safetensors").read_bytes()
    start = 8 + int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:start])
    assert start % 64 == 0
    for key in ("kernel", "table"):
        assert header[key]["data_offsets"][0] % 64 == 0
    loaded = load_file(str(tmp_path / "t.safetensors"))  # still a valid safetensors file
    for key, value in tensors.items():
        np.testing.assert_array_equal(loaded[key], value)


def test_cache_can_be_disabled(tiny_folder, hf_cache, kvmm_cache, monkeypatch):
    monkeypatch.setenv("KVMM_CACHE", "off")
    hfc.install_in_hf_cache(tiny_folder, TINY_REPO, hf_cache)
    build_tiny(weights="test_32")
    assert not kvmm_cache.exists()


def test_a_named_weight_from_hub_blobs(tiny_reference, tiny_folder, tiny_inputs, hf_cache,
                                      kvmm_cache):
    """Files of the Hugging Face cache itself (``blobs/``) are never rewritten in place.
    On PyTorch, which keeps Dense kernels as views of the ``(out, in)`` matrices, the model
    then uses the blob's pages as its variables (as transformers does) and no converted
    copy is cached; JAX and TensorFlow convert into the cache as always. Either way,
    training the model leaves the blob as it was."""
    from kvmm.loading import is_hub_blob

    hfc.install_in_hf_cache(tiny_folder, TINY_REPO, hf_cache, blobs=True)
    (snapshot_file,) = hf_cache.rglob("snapshots/*/model.safetensors")
    blob = snapshot_file.resolve()
    assert is_hub_blob(snapshot_file) and not is_hub_blob(tiny_folder / "model.safetensors")
    before = blob.read_bytes()
    model = build_tiny(weights="test_32")
    ref = hfc.reference_outputs(tiny_reference, *tiny_inputs)["image_logits"]
    np.testing.assert_allclose(_logits(model, *tiny_inputs), ref, atol=1e-4)
    entries = list(kvmm_cache.rglob("*.kvmm.safetensors"))
    if keras.backend.backend() == "torch":
        assert not entries, "nothing to convert, nothing cached"
        if os.path.exists("/proc/self/maps"):
            ranges = _mapped_ranges(blob)
            lent = [v for v in model.weights if any(a <= _address(v) < b for a, b in ranges)]
            assert len(lent) == len(model.weights) - 1  # all but the conv kernel (permuted)
    else:
        assert len(entries) == 1
    for variable in model.weights:  # in place on PyTorch
        variable.assign(keras.ops.ones(variable.shape, variable.dtype) * 0.5)
    assert blob.read_bytes() == before
    np.testing.assert_allclose(_logits(build_tiny(weights="test_32"), *tiny_inputs), ref,
                               atol=1e-4)


def test_cache_write_failure_falls_back_to_an_in_memory_conversion(
    tiny_reference, tiny_folder, tiny_inputs, hf_cache, tmp_path, monkeypatch
):
    hfc.install_in_hf_cache(tiny_folder, TINY_REPO, hf_cache)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("KVMM_CACHE", str(blocker))  # the cache folder cannot be made
    with pytest.warns(UserWarning, match="Could not cache converted weights"):
        model = build_tiny(weights="test_32")
    ref = hfc.reference_outputs(tiny_reference, *tiny_inputs)["image_logits"]
    np.testing.assert_allclose(_logits(model, *tiny_inputs), ref, atol=1e-4)
    assert blocker.read_text() == "" and not list(tmp_path.rglob("*.partial*"))


def test_transposed_copy_and_aligned_memory():
    from kvmm.loading import aligned_empty, transposed_copy

    rng = np.random.default_rng(0)
    for shape in [(3, 5), (64, 65), (1000, 777), (2048, 300)]:  # small and threaded
        matrix = rng.normal(size=shape).astype("float32")
        np.testing.assert_array_equal(transposed_copy(matrix.T), matrix.T)
        out = np.full(shape[::-1], np.nan, "float32")
        assert transposed_copy(matrix.T, out) is out
        np.testing.assert_array_equal(out, matrix.T)
    import ml_dtypes  # 2-byte values: bands of 32 rows instead of 16

    for shape in [(33, 17), (2048, 300)]:
        matrix = rng.normal(size=shape).astype(ml_dtypes.bfloat16)
        np.testing.assert_array_equal(transposed_copy(matrix.T), matrix.T)
    for shape in [(7,), (3, 4), (1024, 1024), (0, 5)]:
        array = aligned_empty(shape, "float32")
        assert array.shape == shape and array.flags.writeable
        assert array.size == 0 or array.ctypes.data % 64 == 0
        array[...] = 1.0
        assert array.sum() == np.prod(shape)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_fresh_buffers_are_private_memory():
    """Buffers of 1 MiB and more are private anonymous maps (a shared one is shmem, which
    is slower to fault in and to unmap) with or without a prefaulter."""
    from kvmm import loading

    def mapping_flags(array):
        address = array.ctypes.data
        for line in open("/proc/self/maps"):
            span, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in span.split("-"))
            if lo <= address < hi:
                return perms
        raise AssertionError("address not mapped")

    assert mapping_flags(loading.aligned_empty((1 << 20,), "float32"))[3] == "p"
    with loading._prefaulting([4 << 20]):
        loading._PREFAULT.current._thread.join()
        array = loading.aligned_empty((1 << 20,), "float32")
        assert mapping_flags(array)[3] == "p"


def test_prefaulted_memory_serves_an_in_memory_conversion(tiny_folder):
    """While the model is built, another thread makes the conversion's buffers resident;
    aligned_empty takes them by size, stops the thread once it finds none ready, and
    nothing is prepared for a load that casts (or reads no checkpoint)."""
    import mmap

    from kvmm import loading

    with loading._prefaulting([1 << 20, 2 << 20, 1 << 20]):
        prefaulter = loading._PREFAULT.current
        prefaulter._thread.join()  # all three ready
        ready = [id(b) for pool in prefaulter._pool.values() for b in pool]
        assert len(ready) == 3

        def memory(array):  # the object owning the array's memory
            while isinstance(array, (np.ndarray, memoryview)):
                array = array.base if isinstance(array, np.ndarray) else array.obj
            return array

        taken = [loading.aligned_empty((1 << 18,), "float32") for _ in range(2)]
        assert all(id(memory(a)) in ready for a in taken)
        assert not prefaulter._stopped
        missed = loading.aligned_empty((1 << 18,), "float32")  # none left of an expected size
        assert isinstance(memory(missed), mmap.mmap) and id(memory(missed)) not in ready
        assert prefaulter._stopped
        assert id(memory(loading.aligned_empty((2 << 20,), "uint8"))) in ready
    assert loading._PREFAULT.current is None and not prefaulter._pool

    family = tiny_family.TINY_FAMILY
    source = loading._Source("folder", str(tiny_folder), path=tiny_folder)
    big = np.zeros((512, 1024), "float32")  # tiny tensors are under 1 MiB: add one
    assert loading._fresh_memory_needed(family, source, "float32") == []
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(tiny_folder / "model.safetensors"))
    save_file({**tensors, "extra": big}, str(tiny_folder / "model.safetensors"))
    assert loading._fresh_memory_needed(family, source, "float32") == [big.nbytes]
    assert loading._fresh_memory_needed(family, source, "bfloat16") == []
    named = loading._Source("named", "x", "repo/x")
    assert loading._fresh_memory_needed(family, named, "float32") == []


def test_weights_h5_round_trip(tiny_folder, tiny_inputs, tmp_path):
    model = build_tiny(weights=str(tiny_folder))
    path = tmp_path / "tiny.weights.h5"
    model.save_weights(str(path))
    again = build_tiny(weights=str(path))
    assert_same_model(again, model, lambda m: _logits(m, *tiny_inputs))


def test_a_converted_model_trains_and_round_trips(tiny_folder, tiny_inputs, tmp_path):
    """Kernels converted from (out, in) checkpoint tensors (on PyTorch: views of those
    matrices) take optimizer updates and survive a ``.keras`` round trip."""
    from kvmm.losses import SigmoidLoss

    images, token_ids = tiny_inputs
    model = build_tiny(weights=str(tiny_folder))
    before = {v.path: keras.ops.convert_to_numpy(v) for v in model.trainable_weights}
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=SigmoidLoss())
    pairs = {"images": images[:2], "token_ids": token_ids[:2]}
    model.fit(pairs, batch_size=2, epochs=1, verbose=0)
    kernels = [p for p in before if p.endswith("/kernel")]
    assert kernels
    for path in kernels:
        after = keras.ops.convert_to_numpy(
            next(v for v in model.trainable_weights if v.path == path))
        assert not np.array_equal(after, before[path]), path
    model.save(str(tmp_path / "tuned.keras"))
    again = keras.saving.load_model(str(tmp_path / "tuned.keras"))
    assert_same_model(again, model, lambda m: _logits(m, *tiny_inputs))


def test_folder_records_its_vocabulary(tiny_reference, tmp_path, spm_vocab):
    folder = hfc.save_checkpoint(tiny_reference, tmp_path / "with-vocab", vocabulary=spm_vocab)
    model = build_tiny(weights=str(folder))
    assert model.vocabulary_path == str(folder) and model.vocabulary_repo is None
    assert model.weights_source == str(folder)


# ---- errors ------------------------------------------------------------------------------
def test_unknown_weight_name_lists_valid_ones():
    with pytest.raises(WeightsError) as err:
        SigLIPBaseP16(weights="google_999")
    message = str(err.value)
    assert "google_999" in message and "google_224" in message and "google_multilingual_256" in message


def test_weight_name_of_another_variant_is_pointed_out():
    with pytest.raises(WeightsError, match="SigLIPBaseP16"):
        SigLIPLargeP16(weights="google_224")


def test_missing_path_is_reported():
    with pytest.raises(WeightsError, match="No such file or folder"):
        SigLIPBaseP16(weights="/nonexistent/dir/model.weights.h5")


def test_unknown_variant_lists_valid_ones():
    with pytest.raises(WeightsError, match="SigLIPBaseP16"):
        tiny_family.create_model(tiny_family.TINY_FAMILY, "SigLIPHuge")


def test_checkpoint_of_another_variant_is_refused_naming_it(tmp_path):
    """A Large config.json given to Base fails before any tensor is read."""
    folder = tmp_path / "large"
    folder.mkdir()
    from transformers import SiglipConfig

    SiglipConfig(**hfc.LARGE_256).to_json_file(folder / "config.json")
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(WeightsError, match="SigLIPLargeP16") as err:
        SigLIPBaseP16(weights=str(folder))
    assert "vision_hidden_dim=1024 (expected 768)" in str(err.value)


def test_mis_shaped_tensor_is_reported(tiny_reference, tiny_folder):
    """Without a config.json the tensor shapes themselves are checked."""
    (tiny_folder / "config.json").unlink()
    config = dict(hfc.TINY_VARIANT, vision_intermediate_dim=80)
    family = dataclasses.replace(tiny_family.TINY_FAMILY, variants={"Odd": config})
    with pytest.raises(WeightsError, match=r"fc1\.weight.*\(64, 48\).*\(48, 80\)"):
        tiny_family.create_model(family, "Odd", weights=str(tiny_folder))


def _rewrite_checkpoint(folder, edit):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(folder / "model.safetensors"))


def test_missing_tensor_is_reported(tiny_folder):
    _rewrite_checkpoint(tiny_folder, lambda t: t.pop("vision_model.head.probe"))
    with pytest.raises(WeightsError, match=r"missing tensors: vision_model\.head\.probe"):
        build_tiny(weights=str(tiny_folder))


def test_leftover_tensor_is_reported(tiny_folder):
    _rewrite_checkpoint(tiny_folder, lambda t: t.update(extra_head=np.zeros(3, "float32")))
    with pytest.raises(WeightsError, match="unexpected tensors: extra_head"):
        build_tiny(weights=str(tiny_folder))


def test_truncated_safetensors_is_reported(tiny_folder):
    path = tiny_folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated"):
        build_tiny(weights=str(tiny_folder))


def test_wrong_model_type_is_reported(tiny_folder):
    config = json.loads((tiny_folder / "config.json").read_text())
    config["model_type"] = "clip"
    (tiny_folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="'clip' model, not SigLIP"):
        build_tiny(weights=str(tiny_folder))


def test_offline_with_nothing_cached_says_how_to_work_offline(hf_cache):
    with pytest.raises(HubUnavailableError) as err:
        SigLIPSo400mP14(weights="google_384")
    message = str(err.value)
    assert "google/siglip-so400m-patch14-384" in message
    assert "HF_HUB_OFFLINE" in message and "offline" in message.lower()


def test_failed_load_leaves_no_cache_file(tiny_folder, hf_cache, kvmm_cache):
    _rewrite_checkpoint(tiny_folder, lambda t: t.pop("logit_bias"))
    hfc.install_in_hf_cache(tiny_folder, TINY_REPO, hf_cache)
    with pytest.raises(WeightsError):
        build_tiny(weights="test_32")
    assert not list(kvmm_cache.rglob("*.h5"))


def test_h5_of_another_variant_is_refused(tmp_path):
    path = tmp_path / "tiny.weights.h5"
    build_tiny().save_weights(str(path))
    with pytest.raises(WeightsError, match="tiny.weights.h5"):
        build_tiny(weights=str(path), input_shape=(48, 48, 3))


def test_random_init_is_random_and_loaded_init_is_complete(tiny_folder):
    random = build_tiny()
    kernel = keras.ops.convert_to_numpy(random.vision_model.encoder.blocks[0].attention.query.kernel)
    assert np.abs(kernel).max() > 0
    loaded = build_tiny(weights=str(tiny_folder))
    for variable in loaded.weights:  # zero-filled before loading: none may stay all zeros
        assert np.abs(keras.ops.convert_to_numpy(variable)).max() > 0, variable.path


def test_key_map_that_misses_a_variable_is_caught(tiny_folder):
    family = tiny_family.TINY_FAMILY
    partial = dataclasses.replace(family, key_map=lambda model: family.key_map(model)[:-1])
    with pytest.raises(RuntimeError, match="leaves 1 variable"):
        tiny_family.create_model(partial, "SigLIPTiny", weights=str(tiny_folder))


def test_conversion_shows_progress_when_asked(tiny_folder, capsys):
    build_tiny(weights=str(tiny_folder), progress=True)
    err = capsys.readouterr().err
    assert "Converting" in err and "tensor" in err
    build_tiny(weights=str(tiny_folder), progress=False)
    assert "Converting" not in capsys.readouterr().err
