"""PyTorch inference with kvmm's sublayers called directly against Keras' __call__, in one
process (KERAS_BACKEND=torch; the checkpoints of encoders_speed.py --checkpoint /tmp/ck)."""
import time

import numpy as np
from kvmm.layers import sublayer
from kvmm.models.clip import ClipVitBase32
from kvmm.models.siglip import SigLIPBaseP16
safe = sublayer._direct_call_is_safe
rng = np.random.default_rng(0)
for name, build in (("clip", lambda: ClipVitBase32(weights="/tmp/ck/clip-b32")),
                    ("siglip", lambda: SigLIPBaseP16(weights="/tmp/ck/siglip-base16"))):
    m = build()
    cases = {"img1": lambda: m.encode_images(rng.uniform(-1, 1, (1, 224, 224, 3)).astype("float32"), batch_size=1),
             "img8": lambda: m.encode_images(rng.uniform(-1, 1, (8, 224, 224, 3)).astype("float32"), batch_size=8),
             "txt1": lambda: m.encode_texts(rng.integers(2, 1000, (1, m.max_text_length)), batch_size=1)}
    for case, f in cases.items():
        res = {"direct": [], "call": []}
        f()
        for r in range(8):
            for mode in ("direct", "call"):
                sublayer._direct_call_is_safe = safe if mode == "direct" else (lambda l, x: False)
                t = time.perf_counter(); f(); res[mode].append(time.perf_counter() - t)
        sublayer._direct_call_is_safe = safe
        d, c = np.median(res["direct"]), np.median(res["call"])
        print(f"{name} {case}: direct {1e3*d:.0f} ms, __call__ {1e3*c:.0f} ms, speedup {c/d:.3f}", flush=True)
