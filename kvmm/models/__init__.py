"""Model families. Each sub-package holds the variants, processor and key map of one family."""

from kvmm.models import biomedclip, clip, siglip  # noqa: F401
