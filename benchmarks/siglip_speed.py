#!/usr/bin/env python
"""Alias kept for old commands: ``encoders_speed.py --model siglip-base16``.

    python benchmarks/siglip_speed.py [options]   # == encoders_speed.py --model siglip-base16 [options]

Every option of ``benchmarks/encoders_speed.py`` works here (``--model`` too); results go to
``benchmarks/results/siglip_base_cpu.md``. See ``benchmarks/README.md``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from encoders_speed import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="siglip_speed.py", default_model="siglip-base16"))
