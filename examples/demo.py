"""``make demo``: zero-shot classification with the demo model kvmm ships, offline.

Draws a few fresh synthetic shape images (:mod:`kvmm.demo.shapes`; some of them of the
colour-shape pairs the model never saw in training), writes them as PNG files, and
classifies each file against all 72 captions ("a small red circle", ...) with
``SigLIPDemo(weights="shapes")``: a small SigLIP-architecture model trained from scratch by
``examples/train_demo_model.py``, whose weights and vocabulary are in ``weights/``. It prints
each image's true caption, its best labels with their sigmoid probabilities, and the
accuracy.

    HF_HUB_OFFLINE=1 python examples/demo.py [--count 8] [--seed 7] [--out FOLDER]

The same code runs with Google's checkpoints when the Hugging Face Hub is reachable: replace
``SigLIPDemo(weights="shapes")`` by ``SigLIPBaseP16(weights="google_224")`` and the shape
captions by your own labels.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from kvmm.demo import shapes
from kvmm.models.siglip import SigLIPDemo, SigLIPProcessor
from kvmm.zero_shot import ZeroShotClassifier


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=8, help="images to draw (default 8)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the images (default 7)")
    parser.add_argument("--out", type=Path, help="folder for the PNG files (default: a new temp folder)")
    parser.add_argument("--top", type=int, default=3, help="labels shown per image (default 3)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    out = args.out or Path(tempfile.mkdtemp(prefix="kvmm-demo-"))
    out.mkdir(parents=True, exist_ok=True)

    # A quarter of the images (at least one) from the held-out pairs, the rest from the seen ones.
    held = max(1, args.count // 4) if args.count > 1 else 0
    pairs = shapes.generate(args.count - held, seed=args.seed, combinations=shapes.training_combinations())
    pairs += shapes.generate(held, seed=args.seed + 1, combinations=shapes.held_out_combinations())
    order = np.random.default_rng(args.seed).permutation(len(pairs))
    pairs = [pairs[i] for i in order]
    paths = []
    for index, (image, combination) in enumerate(pairs):
        paths.append(out / f"{index:02d}_{combination.caption.replace(' ', '_')}.png")
        image.save(paths[-1])

    model = SigLIPDemo(weights="shapes")
    processor = SigLIPProcessor.for_model(model)  # the vocabulary shipped next to the weights
    labels = shapes.labels()
    classifier = ZeroShotClassifier(model, labels, templates=["{}"], processor=processor)
    probabilities = classifier.predict_proba(paths)

    print(f"SigLIPDemo (weights='shapes', {model.count_params():,} parameters), "
          f"{len(labels)} labels, {len(paths)} images in {out}")
    print("Probabilities are sigmoids: each label is scored on its own (they need not sum to 1).\n")
    correct = {"seen": [0, 0], "held-out": [0, 0]}
    for path, (_, combination), row in zip(paths, pairs, probabilities):
        kind = "held-out" if combination.held_out else "seen"
        best = int(np.argmax(row))
        hit = labels[best] == combination.caption
        correct[kind][0] += hit
        correct[kind][1] += 1
        print(f"{path.name}\n  true: {combination.caption}"
              f"{'  (held-out pair: never seen in training)' if combination.held_out else ''}")
        for i in np.argsort(-row)[: args.top]:
            mark = "  <- correct" if labels[i] == combination.caption else ""
            print(f"  {row[i]:7.3f}  {labels[i]}{mark}")
    total = sum(c for c, _ in correct.values())
    detail = ", ".join(f"{kind} {c}/{n}" for kind, (c, n) in correct.items() if n)
    print(f"\naccuracy: {total}/{len(paths)} ({total / len(paths):.0%}; {detail}) "
          f"over {len(labels)} labels (chance {1 / len(labels):.1%})")
    print(f"images: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
