"""The nnlite version (one home, read by the package and by saved files)."""

__version__ = "0.1.0"
