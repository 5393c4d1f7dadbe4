"""Numerical verification of a converted kvmm model against transformers (implemented in
:mod:`kvmm.cli.convert`, shared with ``kvmm convert --verify``)."""

from kvmm.cli.convert import REFERENCE_CLASSES, _reference_source, verify  # noqa: F401
