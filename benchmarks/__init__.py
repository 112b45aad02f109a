"""storyfilm's benchmarks: `python -m benchmarks` (see benchmarks/__main__.py); results in benchmarks/results.md."""
