"""Zero-shot image classification with SigLIP.

    python examples/siglip_zero_shot.py --images cat.jpg dog.jpg --labels cat dog car
    python examples/siglip_zero_shot.py --weights google_multilingual_256 \\
        --images cat.jpg --labels "un gato" "un chien" "ein Vogel"
    python examples/siglip_zero_shot.py --weights ./my-siglip-checkpoint --images cat.jpg \\
        --labels cat dog

Without --images, the photos that ship with scikit-image (if installed) are used.
SigLIP scores every (image, label) pair independently: probabilities are
sigmoid(logits), they do not sum to one across labels.
"""

from __future__ import annotations

import argparse
import sys

import keras

import kvmm
from kvmm.models.siglip import SIGLIP_VARIANTS, SigLIPProcessor


def sample_images():
    """(names, arrays) of a few scikit-image sample photos."""
    import skimage.data

    names = ["chelsea", "coffee", "astronaut"]
    return names, [getattr(skimage.data, name)() for name in names]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", default="SigLIPBaseP16", choices=sorted(SIGLIP_VARIANTS))
    parser.add_argument("--weights", default="google_224",
                        help="named weight, hf:<repo_id>, checkpoint folder or .weights.h5")
    parser.add_argument("--images", nargs="+", help="image files (default: scikit-image photos)")
    parser.add_argument("--labels", nargs="+", required=True)
    parser.add_argument("--template", default="a photo of a {}.",
                        help='prompt template, "{}" is replaced by the label')
    args = parser.parse_args(argv)

    model = getattr(kvmm.models.siglip, args.variant)(weights=args.weights)
    processor = SigLIPProcessor.for_model(model)
    if args.images:
        names, inputs = args.images, processor(images=args.images)
    else:
        names, arrays = sample_images()
        inputs = processor(images=arrays)
    texts = [args.template.format(label) for label in args.labels]
    inputs.update(processor(text=texts))

    logits = model(inputs)["image_logits"]
    probs = keras.ops.convert_to_numpy(keras.ops.sigmoid(logits))
    width = max(len(label) for label in args.labels)
    for name, row in zip(names, probs):
        print(f"{name}:")
        for label, p in sorted(zip(args.labels, row), key=lambda item: -item[1]):
            print(f"  {label:<{width}}  {p:7.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
