"""Entry point of a benchmark worker process: `python -m benchmarks.worker module:function '{json args}'`.

The function runs in a fresh interpreter (its imports, caches and children are its own) and returns
`common.operation(...)`; the last line printed is its JSON report.
"""

from __future__ import annotations

import importlib
import json
import sys


def main() -> None:
    target, args = sys.argv[1], json.loads(sys.argv[2])
    module, _, function = target.partition(":")
    report = getattr(importlib.import_module(f"benchmarks.{module}"), function)(**args)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
