"""The package's version, in a module of its own so that any part can read it without
importing the package's public surface (which would import those parts back)."""

__version__ = "0.1.0"
