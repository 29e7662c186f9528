"""Run every benchmark module (``bench/bench_*.py``); each writes its JSON under --out.

A module exposes ``main(out_dir: pathlib.Path) -> dict``. A failing benchmark is reported and
makes the run exit non-zero, after the others have run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
import traceback
from pathlib import Path

import bench
from bench.bench_gateway_wrk import cpu_info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("var/bench"))
    parser.add_argument("--only", nargs="*", help="run only these modules (e.g. bench_redis)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    modules = pkgutil.iter_modules(bench.__path__)
    names = sorted(m.name for m in modules if m.name.startswith("bench_"))
    if args.only:
        names = [n for n in names if n in args.only]
    failures: list[str] = []
    summary: dict[str, object] = {"machine": cpu_info()}
    for name in names:
        started = time.perf_counter()
        sys.stderr.write(f"==> {name}\n")
        try:
            module = importlib.import_module(f"bench.{name}")
            result = module.main(args.out)
            summary[name] = {"seconds": round(time.perf_counter() - started, 1), "result": result}
        except Exception:
            traceback.print_exc()
            failures.append(name)
            summary[name] = {"error": traceback.format_exc(limit=3)}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    sys.stderr.write(f"wrote {args.out / 'summary.json'}\n")
    if failures:
        sys.stderr.write(f"failed: {', '.join(failures)}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
