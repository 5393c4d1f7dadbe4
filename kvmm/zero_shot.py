"""Zero-shot image classification with any kvmm image-text model.

Class names are turned into prompts with templates (``"a photo of a {}."``), the prompts
are embedded by the text tower, and every image is scored against every class with the
model's own logit scale (and bias) and its family's activation: ``sigmoid`` for SigLIP
(each image-label pair is an independent yes/no; the scores do not sum to one), ``softmax``
over the labels for CLIP and BiomedCLIP.

>>> import kvmm
>>> from kvmm.zero_shot import ZeroShotClassifier
>>> model = kvmm.models.siglip.SigLIPBaseP16(weights="google_224")        # doctest: +SKIP
>>> classifier = ZeroShotClassifier(
...     model, ["cat", "dog"], templates=["a photo of a {}.", "a blurry photo of a {}."]
... )                                                                     # doctest: +SKIP
>>> classifier.predict_proba(["cat.jpg"])      # (1, 2) float32, sigmoid  # doctest: +SKIP
array([[0.93, 0.0004]], dtype=float32)
>>> classifier.predict(["cat.jpg"])                                       # doctest: +SKIP
['cat']
"""

from __future__ import annotations

import os
import string
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
from keras import ops

from kvmm.models.dual_encoder import numpy_l2_normalize

#: The template used when none is given (CLIP's and SigLIP's usual single prompt).
DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)


def _check_labels(labels) -> list[str]:
    if isinstance(labels, str) or not isinstance(labels, Iterable):
        raise TypeError(
            f"labels must be a list of class names, got {type(labels).__name__} "
            f"{labels!r}" + (" (wrap a single label in a list)." if isinstance(labels, str) else ".")
        )
    labels = list(labels)
    if not labels:
        raise ValueError("labels is empty: give at least one class name.")
    for index, label in enumerate(labels):
        if not isinstance(label, str):
            raise TypeError(f"labels[{index}] is a {type(label).__name__}, not a string: {label!r}.")
        if not label.strip():
            raise ValueError(f"labels[{index}] is an empty string.")
    duplicates = [label for label, count in Counter(labels).items() if count > 1]
    if duplicates:
        raise ValueError(
            f"labels must be distinct; these appear more than once: {', '.join(map(repr, duplicates))}."
        )
    return labels


def _check_templates(templates) -> list[str]:
    if templates is None:
        return list(DEFAULT_TEMPLATES)
    if isinstance(templates, str):
        templates = [templates]
    templates = list(templates)
    if not templates:
        raise ValueError("templates is empty: give at least one, e.g. ['a photo of a {}.'].")
    for index, template in enumerate(templates):
        if not isinstance(template, str):
            raise TypeError(f"templates[{index}] is a {type(template).__name__}, not a string.")
        try:
            fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
        except ValueError as exc:
            raise ValueError(f"Template {template!r} is not a valid format string: {exc}.") from exc
        if fields != [""]:
            raise ValueError(
                f"Template {template!r} must contain exactly one '{{}}' where the label goes "
                f"(e.g. 'a photo of a {{}}.'); literal braces are written '{{{{' and '}}}}'."
            )
    return templates


class ZeroShotClassifier:
    """Classify images into ``labels`` with an image-text model, without training.

    Each label's text embedding is the mean of the L2-normalized embeddings of its prompts
    (one per template), normalized again: the prompt ensembling of the CLIP paper. They are
    computed once, when the classifier is built.

    Args:
        model: a kvmm image-text model (SigLIP, CLIP, BiomedCLIP, ...).
        labels: the class names, distinct, non-empty strings.
        templates: format strings with one ``{}`` for the label, e.g.
            ``["a photo of a {}.", "a drawing of a {}."]``; default
            :data:`DEFAULT_TEMPLATES` (``"a photo of a {}."``). ``["{}"]`` uses the labels
            as they are.
        processor: the model's processor; default ``Processor.for_model(model)`` of its
            family (for the tokenizer and the image preprocessing).
        batch_size: images / prompts per forward pass.

    Raises:
        ValueError: empty or duplicate labels, a template without ``{}``, a bad batch size.
        TypeError: labels or templates that are not strings.

    Example:

    >>> from kvmm.demo import shapes
    >>> from kvmm.models.siglip import SigLIPDemo
    >>> model = SigLIPDemo(weights="shapes")                               # doctest: +SKIP
    >>> classifier = ZeroShotClassifier(model, ["red circle", "blue square"])  # doctest: +SKIP
    >>> images = [image for image, _ in shapes.generate(2, seed=1)]
    >>> classifier.predict_proba(images).shape                             # doctest: +SKIP
    (2, 2)
    """

    def __init__(
        self,
        model,
        labels: Sequence[str],
        templates: Sequence[str] | str | None = None,
        processor=None,
        batch_size: int = 32,
    ):
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.labels = _check_labels(labels)
        self.templates = _check_templates(templates)
        self.model = model
        if processor is None:
            from kvmm.embedder import processor_for

            processor = processor_for(model)
        self.processor = processor
        self.batch_size = int(batch_size)
        #: ``(num_labels, embedding_dim)`` float32, L2-normalized: the ensembled label embeddings.
        self.text_embeddings = self._label_embeddings()

    # -- text ---------------------------------------------------------------------------
    def _encode_prompts(self, prompts: list[str]) -> np.ndarray:
        """L2-normalized embeddings of ``prompts`` through the processor and the model."""
        parts = []
        for start in range(0, len(prompts), self.batch_size):
            token_ids = self.processor(text=prompts[start : start + self.batch_size])["token_ids"]
            parts.append(np.asarray(self.model.encode_texts(token_ids), np.float32))
        return np.concatenate(parts)

    def _label_embeddings(self) -> np.ndarray:
        prompts = [template.format(label) for label in self.labels for template in self.templates]
        embeddings = numpy_l2_normalize(self._encode_prompts(prompts))
        embeddings = embeddings.reshape(len(self.labels), len(self.templates), -1)
        return numpy_l2_normalize(embeddings.mean(axis=1))

    # -- images ---------------------------------------------------------------------------
    def _is_preprocessed(self, images) -> bool:
        return (
            isinstance(images, np.ndarray)
            and images.ndim == 4
            and np.issubdtype(images.dtype, np.floating)
        )

    def image_embeddings(self, images) -> np.ndarray:
        """``(N, embedding_dim)`` L2-normalized embeddings of ``images``.

        ``images``: a list of paths, PIL images or ``(H, W[, C])`` arrays (any size: they
        go through the processor); a single one of those; or a 4-D float array
        ``(N, H, W, 3)``, taken as already preprocessed (the processor's ``"images"``).
        """
        if not isinstance(images, (list, tuple, np.ndarray, str, os.PathLike)) and hasattr(images, "__array__"):
            images = np.asarray(images)  # a framework tensor
        if self._is_preprocessed(images):
            return np.asarray(self.model.encode_images(images, batch_size=self.batch_size), np.float32)
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)  # a batch of raw (e.g. uint8) images
        elif not isinstance(images, (list, tuple)):
            images = [images]
        if not images:
            raise ValueError("No images given (an empty list).")
        parts = []
        for start in range(0, len(images), self.batch_size):
            pixels = self.processor.image_processor(list(images[start : start + self.batch_size]))
            parts.append(self.model.encode_images(pixels, batch_size=self.batch_size))
        return np.concatenate(parts).astype(np.float32)

    # -- scores -----------------------------------------------------------------------------
    def logits(self, images) -> np.ndarray:
        """``(N, num_labels)`` float32 logits: cosine similarity times the model's
        ``exp(logit_scale)`` (plus ``logit_bias`` for SigLIP)."""
        image_logits, _ = self.model.logits(self.image_embeddings(images), self.text_embeddings)
        return np.asarray(ops.convert_to_numpy(image_logits), np.float32)

    def predict_proba(self, images) -> np.ndarray:
        """``(N, num_labels)`` float32 probabilities: ``sigmoid(logits)`` for SigLIP (each
        label scored on its own), ``softmax`` over the labels for CLIP / BiomedCLIP."""
        probabilities = self.model.probabilities(self.logits(images))
        return np.asarray(ops.convert_to_numpy(probabilities), np.float32)

    def predict(self, images) -> list[str]:
        """The best label of each image."""
        return [self.labels[i] for i in np.argmax(self.logits(images), axis=-1)]

    def __repr__(self) -> str:
        return (
            f"ZeroShotClassifier({type(self.model).__name__} {getattr(self.model, 'variant', '')}, "
            f"{len(self.labels)} labels, {len(self.templates)} templates)"
        )
