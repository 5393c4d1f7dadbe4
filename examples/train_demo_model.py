"""Train the shipped demo model, ``SigLIPDemo(weights="shapes")``, from scratch.

1. Trains a SentencePiece vocabulary on the training captions (laid out like SigLIP's
   ``spiece.model``: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, no BOS; BPE, so that
   every word is one piece).
2. Builds ``SigLIPDemo(weights=None)`` and trains it with plain Keras,
   ``model.compile(optimizer, loss=kvmm.losses.SigmoidLoss())`` + ``model.fit``, on
   batches of synthetic shapes (:mod:`kvmm.demo.shapes`) drawn fresh for every step. The
   held-out colour-shape pairs (``shapes.HELD_OUT_PAIRS``) never appear in training.
3. Writes ``siglip_demo_shapes.weights.h5`` and ``spiece.model`` into ``--out`` (each
   written to a temporary file first, then renamed).
4. Prints the zero-shot accuracy over all 72 captions on a fresh test set (another seed),
   for the seen and the held-out combinations separately.

    KERAS_BACKEND=jax python examples/train_demo_model.py              # ~13 min on 2 CPU cores
    KERAS_BACKEND=jax python examples/train_demo_model.py --quick --out /tmp/demo  # seconds

Without ``--out`` the files go to ``weights/siglip_demo_shapes/`` (where
``SigLIPDemo(weights="shapes")`` loads them from); ``--quick`` never writes there unless
``--out`` says so.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

import kvmm.losses
from kvmm.demo import shapes
from kvmm.loading import SHIPPED_WEIGHTS_DIR, save_weights_atomic
from kvmm.models.siglip import SigLIPDemo, SigLIPProcessor
from kvmm.zero_shot import ZeroShotClassifier

WEIGHTS_FILE = "siglip_demo_shapes.weights.h5"
VOCABULARY_FILE = "spiece.model"
DEFAULT_OUT = SHIPPED_WEIGHTS_DIR / "siglip_demo_shapes"
#: The seed of the test sets (training batches use --seed).
TEST_SEED = 20240607


def train_vocabulary(folder: Path, vocabulary_size: int, sequence_length: int) -> Path:
    """A SentencePiece model of the training captions in ``folder/spiece.model``.

    BPE rather than SigLIP's unigram: on a corpus this small, the unigram trainer keeps
    only ~40 mostly single-letter pieces, and a caption would take up to 28 tokens (more
    than the model's 16 positions). BPE with a 128-piece budget keeps every word whole.
    """
    import sentencepiece

    corpus = shapes.caption_corpus()
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus * 4),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocabulary_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    processor = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())
    pieces = [processor.id_to_piece(i) for i in range(3)]
    if pieces != ["<pad>", "</s>", "<unk>"] or processor.get_piece_size() > vocabulary_size:
        raise RuntimeError(f"Unexpected vocabulary layout: {pieces}, {processor.get_piece_size()} pieces.")
    longest = max(len(processor.encode(text)) for text in corpus)
    if longest >= sequence_length:  # one position is for </s>
        raise RuntimeError(f"A caption takes {longest} tokens; the model has {sequence_length} positions.")
    final = folder / VOCABULARY_FILE
    partial = folder / f".{VOCABULARY_FILE}.{os.getpid()}.partial"
    partial.write_bytes(model.getvalue())
    os.replace(partial, final)
    return final


class ShapeBatches(keras.utils.PyDataset):
    """``steps`` batches of freshly drawn shapes per epoch; batch ``i`` of epoch ``e`` is
    the same for the same ``seed`` (numpy's SeedSequence of ``(seed, e, i)``)."""

    def __init__(self, processor, steps: int, batch_size: int, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.processor, self.steps, self.batch_size, self.seed = processor, steps, batch_size, seed
        self.epoch = 0

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        images, captions = shapes.training_batch(rng, self.batch_size)
        inputs = self.processor(text=captions, images=images)
        return {"images": inputs["images"], "token_ids": inputs["token_ids"]}

    def on_epoch_end(self):
        self.epoch += 1


def evaluate(model, processor, per_combination: int, seed: int = TEST_SEED) -> dict:
    """Zero-shot accuracy over all 72 captions on fresh images, seen and held-out apart."""
    classifier = ZeroShotClassifier(model, shapes.labels(), templates=["{}"], processor=processor,
                                    batch_size=128)
    results = {}
    for name, combinations, offset in (("seen", shapes.training_combinations(), 0),
                                       ("held_out", shapes.held_out_combinations(), 1)):
        # as many held-out images as seen ones (per_combination x 60 each)
        pairs = shapes.generate(per_combination * len(shapes.training_combinations()),
                                seed=seed + offset, combinations=combinations)
        predicted = classifier.predict([image for image, _ in pairs])
        truth = [c for _, c in pairs]
        by_caption = {c.caption: c for c in shapes.all_combinations()}
        guesses = [by_caption[p] for p in predicted]
        results[name] = {
            "images": len(pairs),
            "accuracy": float(np.mean([g == t for g, t in zip(guesses, truth)])),
            "colour": float(np.mean([g.colour == t.colour for g, t in zip(guesses, truth)])),
            "shape": float(np.mean([g.shape == t.shape for g, t in zip(guesses, truth)])),
            "size": float(np.mean([g.size == t.size for g, t in zip(guesses, truth)])),
        }
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--steps", type=int, default=7000, help="training steps")
    parser.add_argument("--batch-size", type=int, default=30, help="pairs per batch (at most 60)")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-per-combination", type=int, default=10,
                        help="test images per seen combination (as many held-out images in all)")
    parser.add_argument("--quick", action="store_true",
                        help="a seconds-long smoke run: a few steps, a tiny test set")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.batch_size, args.eval_per_combination = 6, 8, 1
        if args.out is None:
            args.out = Path(tempfile.mkdtemp(prefix="kvmm-demo-quick-"))
    out = (args.out or DEFAULT_OUT).resolve()
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(args.seed)

    started = time.time()
    model = SigLIPDemo(weights=None)
    vocabulary = train_vocabulary(out, model.vocabulary_size, model.max_text_length)
    processor = SigLIPProcessor(image_size=model.image_size, sequence_length=model.max_text_length,
                                vocabulary=vocabulary)
    print(f"vocabulary: {processor.tokenizer.vocabulary_size} pieces -> {vocabulary}")
    print(f"model: SigLIPDemo, {model.count_params():,} parameters; backend {keras.backend.backend()}")

    steps_per_epoch = min(200, args.steps)
    epochs = -(-args.steps // steps_per_epoch)
    total = steps_per_epoch * epochs
    warmup = max(1, total // 20)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=total - warmup, alpha=0.02,
        warmup_target=args.learning_rate, warmup_steps=warmup,
    )
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=args.weight_decay,
                                       global_clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_names=["logit_scale", "logit_bias", "bias", "gamma", "beta"])
    model.compile(optimizer=optimizer, loss=kvmm.losses.SigmoidLoss())
    data = ShapeBatches(processor, steps_per_epoch, args.batch_size, args.seed)
    history = model.fit(data, epochs=epochs, verbose=2 if not args.quick else 0)
    train_seconds = time.time() - started
    losses = history.history["loss"]
    print(f"trained {total} steps of {args.batch_size} pairs in {train_seconds:.0f} s; "
          f"loss {losses[0]:.3f} -> {losses[-1]:.3f}; logit scale "
          f"{float(np.exp(keras.ops.convert_to_numpy(model.logit_scale)[0])):.1f}, bias "
          f"{float(keras.ops.convert_to_numpy(model.logit_bias)[0]):.2f}")

    # A compiled model's save_weights also stores the optimizer state (2 more copies of the
    # weights for AdamW): ship a fresh, uncompiled copy with the trained weights only.
    shipped = SigLIPDemo(weights=None)
    shipped.set_weights(model.get_weights())
    save_weights_atomic(shipped, out / WEIGHTS_FILE)
    results = evaluate(model, processor, args.eval_per_combination)
    for name, r in results.items():
        print(f"zero-shot accuracy, {name.replace('_', '-')} combinations ({r['images']} images, "
              f"72 labels): {r['accuracy']:.1%}  (colour {r['colour']:.1%}, shape {r['shape']:.1%}, "
              f"size {r['size']:.1%})")
    summary = {"steps": total, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
               "seed": args.seed, "train_seconds": round(train_seconds, 1),
               "final_loss": round(float(losses[-1]), 4), "zero_shot": results}
    print("summary: " + json.dumps(summary))
    print(f"wrote {out / WEIGHTS_FILE} and {out / VOCABULARY_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
