"""Image-caption datasets for ``model.fit``: a folder of images plus a captions file."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import keras
import numpy as np

from kvmm.errors import ImageReadError


def read_captions(captions_file: str | os.PathLike) -> list[tuple[str, str]]:
    """``[(image, caption), ...]`` from a CSV file with columns ``image,caption`` or a JSON
    lines file (``.jsonl``/``.json``) of ``{"image": ..., "caption": ...}`` objects."""
    path = Path(captions_file)
    if not path.is_file():
        raise FileNotFoundError(f"Captions file not found: {path}")
    pairs = []
    if path.suffix.lower() in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    pairs.append((str(record["image"]), str(record["caption"])))
                except (json.JSONDecodeError, KeyError, TypeError) as error:
                    raise ValueError(
                        f'{path}:{number}: expected a JSON object with "image" and "caption" '
                        f"({error.__class__.__name__}: {error})."
                    ) from None
    else:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"image", "caption"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(
                    f"{path}: the CSV header must name the columns image,caption; missing "
                    f"{sorted(missing)} (header: {reader.fieldnames})."
                )
            pairs = [(row["image"], row["caption"]) for row in reader]
    if not pairs:
        raise ValueError(f"{path} holds no image-caption pairs.")
    return pairs


class CaptionDataset(keras.utils.PyDataset):
    """Batches of ``{"images", "token_ids"}`` pairs for ``model.fit`` (no labels: the pairs
    are the labels of the image-text losses).

    Args:
        image_dir: folder the captions file's image paths are relative to.
        captions: a captions file (see ``read_captions``) or a list of ``(image, caption)``.
        processor: the model's processor (``Processor.for_model(model)``).
        batch_size: pairs per batch.
        shuffle: reshuffle the pairs at every epoch (seeded by ``seed``).
        drop_last: drop the last partial batch (keeps one batch shape: no recompilation).
        **kwargs: ``keras.utils.PyDataset`` options (``workers``, ``use_multiprocessing``).

    ``len(dataset)`` is the number of batches per epoch, so Keras' progress bar knows it.
    Every image file is checked to exist up front; an unreadable one raises
    ``ImageReadError`` naming it when its batch is read.
    """

    def __init__(
        self,
        image_dir,
        captions,
        processor,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int | None = None,
        drop_last: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        pairs = read_captions(captions) if isinstance(captions, (str, os.PathLike)) else captions
        root = Path(image_dir)
        self.pairs = [(str(root / image), caption) for image, caption in pairs]
        missing = [p for p, _ in self.pairs if not os.path.isfile(p)]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise FileNotFoundError(f"{len(missing)} image(s) of the captions not found: {shown}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if drop_last and len(self.pairs) < batch_size:
            raise ValueError(
                f"{len(self.pairs)} pairs make no full batch of {batch_size} (drop_last=True)."
            )
        self.processor = processor
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(self.pairs))
        if shuffle:
            self._rng.shuffle(self._order)

    def __len__(self) -> int:
        count = len(self.pairs) / self.batch_size
        return math.floor(count) if self.drop_last else math.ceil(count)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range (0..{len(self) - 1}).")
        chosen = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        paths = [self.pairs[i][0] for i in chosen]
        texts = [self.pairs[i][1] for i in chosen]
        try:
            batch = self.processor(text=texts, image_paths=paths)
        except OSError as error:  # unreadable files already raise ImageReadError (a ValueError)
            raise ImageReadError(f"Could not read an image of batch {index}: {error}") from error
        return {key: value for key, value in batch.items() if key != "input_ids"}

    def on_epoch_end(self):
        if self.shuffle:
            self._rng.shuffle(self._order)
