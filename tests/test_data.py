"""kvmm.data: a folder of images + a captions file -> batches for model.fit."""

import json

import keras
import numpy as np
import pytest

from kvmm.data import CaptionDataset, read_captions
from kvmm.losses import SigmoidLoss
from kvmm.models.siglip import SigLIPProcessor
from tiny_family import build_tiny

CAPTIONS = {
    "chelsea": "a cat on a rug",
    "coffee": "a cup of coffee",
    "astronaut": "an astronaut with a flag",
    "retina": "a retina scan",
    "camera": "a man with a camera",
}


@pytest.fixture
def caption_folder(tmp_path, sample_images):
    (tmp_path / "img").mkdir()
    for name in CAPTIONS:
        sample_images[name].save(tmp_path / "img" / f"{name}.png")
    csv_file = tmp_path / "captions.csv"
    csv_file.write_text(
        "image,caption\n" + "".join(f"{n}.png,{c}\n" for n, c in CAPTIONS.items()),
        encoding="utf-8",
    )
    jsonl_file = tmp_path / "captions.jsonl"
    jsonl_file.write_text(
        "".join(json.dumps({"image": f"{n}.png", "caption": c}) + "\n" for n, c in CAPTIONS.items())
    )
    return tmp_path


@pytest.fixture
def processor(spm_vocab):
    return SigLIPProcessor(vocabulary=spm_vocab, image_size=32, sequence_length=12)


def test_csv_and_jsonl_read_the_same_pairs(caption_folder):
    from_csv = read_captions(caption_folder / "captions.csv")
    assert from_csv == [(f"{n}.png", c) for n, c in CAPTIONS.items()]
    assert read_captions(caption_folder / "captions.jsonl") == from_csv


def test_batches_match_the_processor_and_reshuffle(caption_folder, processor):
    data = CaptionDataset(
        caption_folder / "img", caption_folder / "captions.csv", processor, batch_size=2, seed=0
    )
    assert len(data) == 3
    seen = []
    for index in range(len(data)):
        batch = data[index]
        assert batch["images"].shape[1:] == (32, 32, 3) and batch["token_ids"].shape[1] == 12
        seen.extend(batch["token_ids"].tolist())
    # Every pair once per epoch, each image next to its own caption.
    order = [data.pairs[i] for i in data._order]
    expected = processor(text=[c for _, c in order], image_paths=[p for p, _ in order])
    np.testing.assert_array_equal(np.array(seen), expected["token_ids"])
    np.testing.assert_array_equal(
        np.concatenate([data[i]["images"] for i in range(3)]), expected["images"]
    )
    first_order = data._order.copy()
    data.on_epoch_end()
    assert sorted(data._order) == sorted(first_order)
    dropped = CaptionDataset(
        caption_folder / "img", caption_folder / "captions.jsonl", processor, batch_size=2,
        shuffle=False, drop_last=True,
    )
    assert len(dropped) == 2 and [p for p, _ in dropped.pairs][0].endswith("chelsea.png")


def test_dataset_feeds_fit(caption_folder, processor):
    keras.utils.set_random_seed(0)
    model = build_tiny(vocabulary_size=640)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SigmoidLoss())
    data = CaptionDataset(
        caption_folder / "img", caption_folder / "captions.csv", processor, batch_size=2,
        drop_last=True, seed=1,
    )
    history = model.fit(data, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.all(np.isfinite(history.history["loss"]))


def test_bad_inputs_are_named(caption_folder, processor, tmp_path):
    (tmp_path / "bad.csv").write_text("file,text\na.png,x\n")
    with pytest.raises(ValueError, match="image,caption"):
        read_captions(tmp_path / "bad.csv")
    (tmp_path / "bad.jsonl").write_text('{"image": "a.png"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_captions(tmp_path / "bad.jsonl")
    with pytest.raises(FileNotFoundError, match="not found"):
        read_captions(tmp_path / "nothing.csv")
    (tmp_path / "missing.csv").write_text("image,caption\nghost.png,a ghost\n")
    with pytest.raises(FileNotFoundError, match="ghost.png"):
        CaptionDataset(caption_folder / "img", tmp_path / "missing.csv", processor)
    (caption_folder / "img" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "broken.csv").write_text("image,caption\nbroken.png,broken\n")
    data = CaptionDataset(caption_folder / "img", tmp_path / "broken.csv", processor)
    with pytest.raises(Exception, match="broken.png"):
        data[0]
