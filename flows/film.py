"""Entry point for Prefect deployments (`prefect.yaml`: entrypoint flows/film.py:film)."""

from storyfilm.flow import film

__all__ = ["film"]
