"""kvmm: Keras 3 vision-language encoders (SigLIP, CLIP, BiomedCLIP) for JAX, TensorFlow and PyTorch.

>>> import kvmm
>>> model = kvmm.models.siglip.SigLIPBaseP16(weights="google_224")
>>> processor = kvmm.models.siglip.SigLIPProcessor.for_model(model)
"""

__version__ = "0.1.0"

from kvmm import data, errors, layers, losses, models, training  # noqa: E402,F401
from kvmm.embedder import Embedder  # noqa: E402,F401
