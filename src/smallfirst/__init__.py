"""smallfirst: an OpenAI-compatible gateway that answers with the smallest model that will do."""

__version__ = "0.1.0"
