"""Convert a Hugging Face checkpoint to a Keras ``.weights.h5`` file, optionally verifying it.

    python conversion/convert.py SigLIPBaseP16 --weights google_224 --out base224.weights.h5
    python conversion/convert.py SigLIPBaseP16 --weights ./siglip-folder --out m.weights.h5 --verify
    python conversion/convert.py SigLIPSo400mP14 --weights hf:google/siglip-so400m-patch14-384 \\
        --input-shape 448 --out so400m448.weights.h5
    python conversion/convert.py ClipVitLarge14 --weights openai_336 --out l14-336.weights.h5 --verify

The key map used is the one the library loads with (``kvmm/models/<family>/convert.py``);
this script only drives it. ``--verify`` runs the same random inputs through transformers
(it must be installed) and fails when embeddings differ by more than ``--tolerance``.
The output file is written atomically: an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conversion.verify import verify as verify_against_reference  # noqa: E402
from kvmm.errors import KvmmError  # noqa: E402
from kvmm.cli.convert import convert as convert_model  # noqa: E402
from kvmm.models.clip import CLIP  # noqa: E402
from kvmm.models.siglip import SIGLIP  # noqa: E402

FAMILIES = {variant: family for family in (SIGLIP, CLIP) for variant in family.variants}


def convert(variant, weights, out, input_shape=None, verify=False, tolerance=1e-4,
            family=None, log=print):
    """Build ``variant`` with ``weights``, optionally verify it, and save it to ``out``
    (:func:`kvmm.cli.convert.convert`, verified with :func:`conversion.verify.verify`).

    Returns the verification report (a dict of max abs differences) or ``None``.
    """
    family = family or FAMILIES.get(variant)
    if family is None:
        raise KvmmError(f"Unknown variant {variant!r}; choose one of {', '.join(FAMILIES)}.")
    return convert_model(variant, weights, out, input_shape, verify, tolerance, family, log,
                         verifier=lambda *a, **k: verify_against_reference(*a, **k))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("variant", help=f"one of {', '.join(FAMILIES)}")
    parser.add_argument("--weights", required=True,
                        help="named weight, hf:<repo_id>, or a local checkpoint folder")
    parser.add_argument("--out", required=True, help="output .weights.h5 file")
    parser.add_argument("--input-shape", type=int, nargs="+", metavar="SIZE",
                        help="image size (one number, or height width) if not the checkpoint's")
    parser.add_argument("--verify", action="store_true",
                        help="compare against transformers on random inputs")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args(argv)
    input_shape = None
    if args.input_shape:
        size = args.input_shape * 2 if len(args.input_shape) == 1 else args.input_shape[:2]
        input_shape = (size[0], size[1], 3)
    try:
        convert(args.variant, args.weights, args.out, input_shape, args.verify, args.tolerance)
    except (KvmmError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
