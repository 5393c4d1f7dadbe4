"""Batched, normalized image and text embeddings for any kvmm image-text model.

>>> import kvmm
>>> model = kvmm.models.siglip.SigLIPBaseP16(weights="google_224")      # doctest: +SKIP
>>> embedder = kvmm.Embedder(model)                                      # doctest: +SKIP
>>> vectors = embedder.encode_images(["a.jpg", "b.png"])                # (2, 768), unit norm
>>> texts = embedder.encode_texts(["a cat", "a dog"])                   # (2, 768)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from kvmm.models.dual_encoder import numpy_l2_normalize, predict_batches
from kvmm.utils.images import load_image


def processor_for(model):
    """The processor of ``model``'s family (``Processor.for_model(model)``)."""
    family = getattr(model, "family", None)
    if family in (None, "model"):  # models built before DualEncoder.family was set
        family = type(model).__name__.lower().replace("model", "")
    if family == "siglip":
        from kvmm.models.siglip import SigLIPProcessor as cls
    elif family == "clip":
        from kvmm.models.clip import CLIPProcessor as cls
    elif family == "biomedclip":
        from kvmm.models.biomedclip import BiomedCLIPProcessor as cls
    else:
        raise ValueError(f"No processor known for model family {family!r}.")
    return cls.for_model(model)


@dataclass
class Batch:
    """One streamed batch: the inputs that were embedded, their embeddings (same order) and
    the inputs that could not be read, as ``(input, error message)`` pairs."""

    items: list
    embeddings: np.ndarray
    failures: list = field(default_factory=list)


def _progress_bar(total: int | None, enabled: bool | None, desc: str):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from huggingface_hub.utils import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False)


class Embedder:
    """Embeds images and texts with a kvmm model in fixed-size batches.

    * every batch has exactly ``batch_size`` rows (the last one is padded and the padding
      dropped), so the compiled inference function is traced once, not once per batch;
    * images are read one batch at a time (paths, PIL images or arrays), so memory stays
      flat however many there are; unreadable images are skipped and reported
      (:attr:`failures`) without losing the rest;
    * embeddings are float32 and L2-normalized;
    * a progress bar is shown on stderr for long runs (``progress=None``: when stderr is a
      terminal).

    Args:
        model: a kvmm image-text model (``model.family`` names its processor).
        processor: defaults to the family's ``Processor.for_model(model)``.
        batch_size: rows per compiled batch.
        progress: ``True`` / ``False`` / ``None`` (auto).
    """

    def __init__(self, model, processor=None, batch_size: int = 32, progress: bool | None = None):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
        self.model = model
        self.processor = processor if processor is not None else processor_for(model)
        self.batch_size = int(batch_size)
        self.progress = progress
        #: ``(input, message)`` for every image of the last call that could not be read.
        self.failures: list[tuple[object, str]] = []

    @property
    def dim(self) -> int:
        """Embedding size."""
        return int(self.model.embedding_dim)

    def _run(self, tower, inputs: np.ndarray) -> np.ndarray:
        count = len(inputs)
        padding = -count % self.batch_size
        if padding:
            inputs = np.concatenate([inputs, np.repeat(inputs[-1:], padding, axis=0)])
        return numpy_l2_normalize(predict_batches(tower, inputs, self.batch_size)[:count])

    def iter_images(self, images: Iterable, total: int | None = None) -> Iterator[Batch]:
        """Stream ``images`` (paths, PIL images or arrays; any iterable) in batches.

        Yields a :class:`Batch` per ``batch_size`` inputs; failures are also appended to
        :attr:`failures`. ``total`` sizes the progress bar (``len(images)`` when known).
        """
        if total is None and hasattr(images, "__len__"):
            total = len(images)
        bar = _progress_bar(total, self.progress, "embedding images")
        try:
            chunk: list = []
            for item in images:
                chunk.append(item)
                if len(chunk) == self.batch_size:
                    yield self._embed_chunk(chunk, bar)
                    chunk = []
            if chunk:
                yield self._embed_chunk(chunk, bar)
        finally:
            if bar is not None:
                bar.close()

    def _embed_chunk(self, chunk: list, bar) -> Batch:
        good, pixels, failures = [], [], []
        for item in chunk:
            try:
                pixels.append(self.processor.image_processor([load_image(item)])[0])
                good.append(item)
            except Exception as exc:  # noqa: BLE001 - any unreadable image is skipped
                label = os.fspath(item) if isinstance(item, (str, os.PathLike)) else repr(type(item))
                failures.append((item, f"{label}: {exc}"))
        self.failures.extend(failures)
        if pixels:
            embeddings = self._run(self.model.vision_model, np.stack(pixels).astype("float32"))
        else:
            embeddings = np.zeros((0, self.dim), "float32")
        if bar is not None:
            bar.update(len(chunk))
        return Batch(good, embeddings, failures)

    def encode_images(self, images: Iterable) -> np.ndarray:
        """``(N_ok, dim)`` embeddings of the readable images, in input order.

        Unreadable ones are left out and listed in :attr:`failures` (reset on each call).
        """
        self.failures = []
        parts = [batch.embeddings for batch in self.iter_images(images)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), "float32")

    def encode_texts(self, texts: str | Iterable[str]) -> np.ndarray:
        """``(M, dim)`` L2-normalized text embeddings."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return np.zeros((0, self.dim), "float32")
        parts = []
        for start in range(0, len(texts), self.batch_size):
            encoded = self.processor(text=texts[start : start + self.batch_size])
            parts.append(self._run(self.model.text_model, np.asarray(encoded["token_ids"], "int32")))
        return np.concatenate(parts)
