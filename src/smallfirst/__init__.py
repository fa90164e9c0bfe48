"""smallfirst: an OpenAI-compatible gateway that answers with the smallest model that gets it right."""

__version__ = "0.1.0"
