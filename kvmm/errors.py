"""Exceptions raised by kvmm. Each names the file, variant or key at fault."""


class KvmmError(Exception):
    """Base class for every error kvmm raises on purpose."""


class WeightsError(KvmmError, ValueError):
    """A checkpoint does not fit the model (missing, unexpected or mis-shaped tensors),
    or a weight name / file is not valid for the variant."""


class HubUnavailableError(KvmmError, OSError):
    """A file could not be fetched from the Hugging Face Hub and is not in the local cache."""


class ImageReadError(KvmmError, ValueError):
    """An image could not be read or converted to RGB."""
