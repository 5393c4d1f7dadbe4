"""Synthetic captioned images: coloured shapes on a tinted, noisy background.

Every image shows one shape described by three attributes, a :class:`Combination` of a
colour (:data:`COLOURS`), a shape (:data:`SHAPES`) and a size (:data:`SIZES`), and its
caption says so: ``"a small red circle"``. Positions, exact sizes, colour shades and the
background vary at random; everything is drawn from a seeded ``numpy`` generator, so the
same seed gives the same images, pixel for pixel.

A fixed set of colour-shape pairs, :data:`HELD_OUT_PAIRS`, is kept out of training (in
both sizes): every colour and every shape still appears in training, only these pairings do
not, so classifying them zero-shot tests whether a model composes "blue" and "circle" it
learnt apart.

>>> from kvmm.demo import shapes
>>> len(shapes.all_combinations()), len(shapes.held_out_combinations())
(72, 12)
>>> image, combination = shapes.generate(1, seed=0)[0]
>>> image.size, combination.caption                                       # doctest: +SKIP
((64, 64), 'a large blue cross')
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import PIL.Image
import PIL.ImageDraw

#: Colour names and their base RGB value (each image jitters it a little).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 165, 60),
    "blue": (40, 85, 225),
    "yellow": (240, 215, 40),
    "purple": (140, 55, 190),
    "orange": (245, 135, 25),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")
SIZES: tuple[str, ...] = ("small", "large")

#: Colour-shape pairs never shown in training, in either size: one per colour and one per
#: shape (a permutation), so each colour and each shape is still seen with five others.
HELD_OUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("red", "triangle"),
    ("green", "star"),
    ("blue", "circle"),
    ("yellow", "square"),
    ("purple", "cross"),
    ("orange", "diamond"),
)

#: Half-extent of a shape in pixels at 64 px, per size (drawn uniformly in the range).
_RADIUS = {"small": (7.0, 10.0), "large": (17.0, 23.0)}
#: Background grey level range and the most each channel is tinted away from it.
_BACKGROUND = (215.0, 250.0)
_TINT = 8.0
#: Drawing happens at this multiple of the output size, then is downsampled (anti-aliasing).
_SUPERSAMPLE = 4


@dataclasses.dataclass(frozen=True, order=True)
class Combination:
    """One colour, shape and size."""

    colour: str
    shape: str
    size: str

    def __post_init__(self):
        for value, allowed, what in ((self.colour, COLOURS, "colour"), (self.shape, SHAPES, "shape"),
                                     (self.size, SIZES, "size")):
            if value not in allowed:
                raise ValueError(f"Unknown {what} {value!r}; choose one of {', '.join(allowed)}.")

    @property
    def pair(self) -> tuple[str, str]:
        """``(colour, shape)``."""
        return self.colour, self.shape

    @property
    def held_out(self) -> bool:
        """Whether this colour-shape pair is one of :data:`HELD_OUT_PAIRS`."""
        return self.pair in HELD_OUT_PAIRS

    @property
    def caption(self) -> str:
        """The full caption, e.g. ``"a small red circle"``."""
        return caption(self.colour, self.shape, self.size)


def caption(colour: str, shape: str, size: str | None = None) -> str:
    """``"a small red circle"``; without ``size``: ``"a red circle"`` (``"an orange ..."``)."""
    words = [w for w in (size, colour, shape) if w]
    article = "an" if words[0][0] in "aeiou" else "a"
    return " ".join([article, *words])


def all_combinations() -> list[Combination]:
    """Every colour x shape x size combination (72), in a fixed order."""
    return [Combination(c, s, z) for c in COLOURS for s in SHAPES for z in SIZES]


def held_out_combinations() -> list[Combination]:
    """The combinations of :data:`HELD_OUT_PAIRS` (both sizes): 12."""
    return [c for c in all_combinations() if c.held_out]


def training_combinations() -> list[Combination]:
    """The combinations a model may see in training (all but the held-out ones): 60."""
    return [c for c in all_combinations() if not c.held_out]


def labels() -> list[str]:
    """The full captions of :func:`all_combinations`: the label set for zero-shot tests."""
    return [c.caption for c in all_combinations()]


# ---------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------
def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        s = r * 0.85
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r * 0.8, cy), (cx, cy + r), (cx - r * 0.8, cy)]
    if shape == "triangle":  # pointing up, centred on its bounding box
        return [(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)]
    if shape == "star":  # five points
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.42
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        return points
    if shape == "cross":  # a plus sign
        w = r * 0.33
        return [(cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w),
                (cx + r, cy + w), (cx + w, cy + w), (cx + w, cy + r), (cx - w, cy + r),
                (cx - w, cy + w), (cx - r, cy + w), (cx - r, cy - w), (cx - w, cy - w)]
    raise ValueError(f"Unknown shape {shape!r}.")


def render(combination: Combination, rng: np.random.Generator, image_size: int = 64) -> PIL.Image.Image:
    """Draw ``combination`` as an RGB image of ``image_size`` x ``image_size`` pixels.

    The background is a light grey with a slight colour tint plus a little Gaussian noise; the
    shape's colour is its :data:`COLOURS` value jittered by up to +-20 per channel; its size
    is drawn from the size's range and its centre anywhere that keeps it inside the image.
    """
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels, got {image_size}.")
    scale = image_size / 64.0
    big = image_size * _SUPERSAMPLE
    grey = rng.uniform(*_BACKGROUND)
    background = np.clip(grey + rng.uniform(-_TINT, _TINT, 3), 0, 255)
    colour = np.clip(np.array(COLOURS[combination.colour]) + rng.uniform(-20, 20, 3), 0, 255)

    low, high = _RADIUS[combination.size]
    r = rng.uniform(low, high) * scale
    margin = r + 2 * scale
    cx, cy = rng.uniform(margin, image_size - margin, 2)

    canvas = PIL.Image.new("RGB", (big, big), tuple(int(v) for v in background))
    draw = PIL.ImageDraw.Draw(canvas)
    s = _SUPERSAMPLE
    fill = tuple(int(v) for v in colour)
    if combination.shape == "circle":
        draw.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=fill)
    else:
        draw.polygon([(x * s, y * s) for x, y in _polygon(combination.shape, cx, cy, r)], fill=fill)
    small = canvas.resize((image_size, image_size), PIL.Image.Resampling.BOX)
    pixels = np.asarray(small, dtype=np.float32) + rng.normal(0.0, 5.0, (image_size, image_size, 3))
    return PIL.Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))


def generate(
    count: int,
    seed: int,
    combinations: Sequence[Combination] | None = None,
    image_size: int = 64,
) -> list[tuple[PIL.Image.Image, Combination]]:
    """``count`` images with their combination, cycling through ``combinations`` (default:
    all 72) in a seeded random order, so every combination appears ``count // len`` or one
    more times. The same arguments always give the same images.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}.")
    combinations = list(all_combinations() if combinations is None else combinations)
    if not combinations:
        raise ValueError("combinations is empty.")
    rng = np.random.default_rng(seed)
    chosen: list[Combination] = []
    while len(chosen) < count:
        chosen += [combinations[i] for i in rng.permutation(len(combinations))]
    return [(render(c, rng, image_size), c) for c in chosen[:count]]


#: Caption forms used in training: the plain caption and the same after a few prefixes, so
#: prompts such as ``"a photo of a red circle"`` (the default template on ``"red circle"``)
#: are in the model's language.
CAPTION_PREFIXES: tuple[str, ...] = ("", "", "a photo of ", "an image of ", "a picture of ")


def training_batch(
    rng: np.random.Generator,
    batch_size: int,
    combinations: Sequence[Combination] | None = None,
    image_size: int = 64,
    drop_size: float = 0.3,
    by_colour: bool = True,
) -> tuple[list[PIL.Image.Image], list[str]]:
    """One batch of matching ``(images, captions)`` for a pairwise image-text loss.

    The combinations of a batch are all different, and no caption of the batch also fits
    another image of it: a caption leaves the size out (``"a red circle"``) only when its
    colour-shape pair appears once in the batch. So every off-diagonal pair is a true
    negative, as the sigmoid (or contrastive) loss assumes. Captions get a random prefix
    from :data:`CAPTION_PREFIXES`.

    ``by_colour`` (default): the batch is filled colour by colour (the colours in random
    order, the shapes of each in random order), so that each image meets the other shapes
    and the other size of its own colour as negatives: the hard ones, which colour alone
    does not tell apart. Each colour-shape pair comes in both sizes with sized captions or,
    with probability ``drop_size`` (while the batch can still be filled), in one size with a
    size-less caption.
    Otherwise the combinations are drawn at random from all of them, and a caption whose
    pair is alone in the batch drops the size with probability ``drop_size``.
    """
    combinations = list(training_combinations() if combinations is None else combinations)
    if not 1 <= batch_size <= len(combinations):
        raise ValueError(
            f"batch_size must be between 1 and the number of combinations ({len(combinations)}), "
            f"got {batch_size}."
        )
    items: list[tuple[Combination, bool]] = []  # (combination, caption names the size)
    if by_colour:
        pairs: dict[tuple[str, str], list[Combination]] = {}
        for c in combinations:
            pairs.setdefault(c.pair, []).append(c)
        colours = list(dict.fromkeys(c.colour for c in combinations))
        unvisited = len(combinations)
        for k in rng.permutation(len(colours)):
            own = [pair for pair in pairs if pair[0] == colours[k]]
            for j in rng.permutation(len(own)):
                group = pairs[own[j]]
                unvisited -= len(group)
                # drop the size only while enough combinations are left to fill the batch
                if rng.random() < drop_size and len(items) + 1 + unvisited >= batch_size:
                    items.append((group[rng.integers(len(group))], False))
                else:
                    items += [(group[i], True) for i in rng.permutation(len(group))]
            if len(items) >= batch_size:
                break
        items = items[:batch_size]
    else:
        chosen = [combinations[i] for i in rng.choice(len(combinations), batch_size, replace=False)]
        counts: dict[tuple[str, str], int] = {}
        for c in chosen:
            counts[c.pair] = counts.get(c.pair, 0) + 1
        items = [(c, not (counts[c.pair] == 1 and rng.random() < drop_size)) for c in chosen]
    images, captions = [], []
    for c, sized in items:
        prefix = CAPTION_PREFIXES[rng.integers(len(CAPTION_PREFIXES))]
        captions.append(prefix + caption(c.colour, c.shape, c.size if sized else None))
        images.append(render(c, rng, image_size))
    return images, captions


def caption_corpus(combinations: Sequence[Combination] | None = None) -> list[str]:
    """Every caption :func:`training_batch` can write for ``combinations`` (default: the
    training ones), with and without the size, with every prefix: the text a demo
    vocabulary is trained on."""
    combinations = training_combinations() if combinations is None else combinations
    out = []
    for prefix in dict.fromkeys(CAPTION_PREFIXES):
        for c in combinations:
            for size in (None, c.size):
                out.append(prefix + caption(c.colour, c.shape, size))
    return list(dict.fromkeys(out))
