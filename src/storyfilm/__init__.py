"""storyfilm: a YAML storyboard becomes a finished multi-shot film."""

__version__ = "0.1.0"
