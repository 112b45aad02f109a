"""Media helpers: PyAV probing and frame access (probe.py), ffmpeg argv builders and runner (ffmpeg.py), and
the house format every joined segment must match (house.py)."""
