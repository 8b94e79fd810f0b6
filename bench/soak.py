"""Soak: the CI reliability tests, longer — more kill -9s, repeated floods, more hostile texts,
more concurrent writers.

    python -m bench.soak [--kills 100] [--floods 5] [--texts 20000] [--writers 4 --rounds 6]

Runs the same tests `make test` runs (tests/knowledge/test_crash_safety.py, tests/bot/test_load.py,
tests/bot/test_adversarial.py, tests/bot/test_concurrent_writers.py,
tests/knowledge/test_concurrency.py) with bigger numbers, and keeps the figure line each prints.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

from bench.common import REPO_ROOT, report

# pytest -q may put its progress dots in front of a printed line.
FIGURE = re.compile(
    r"^[.sFE]*((?:kill -9 during|flood |adversarial texts:|concurrent writers:|two kb add).*)$",
    re.M,
)


def run_tests(path: str, env: dict[str, str]) -> tuple[bool, list[str], float]:
    """Run one test file; (passed, the figure lines it printed, seconds)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", path],
        cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        print(proc.stdout[-4000:], file=sys.stderr)
    return proc.returncode == 0, FIGURE.findall(proc.stdout), time.perf_counter() - started


def main() -> None:
    """Run the soak and report every figure line with pass/fail."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100, help="kill -9s of ingest and of reindex")
    parser.add_argument("--floods", type=int, default=5, help="50x5 floods, one after another")
    parser.add_argument("--texts", type=int, default=20_000, help="adversarial texts")
    parser.add_argument("--writers", type=int, default=4, help="kb add processes at once")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of concurrent writes")
    args = parser.parse_args()
    runs = [("tests/knowledge/test_crash_safety.py", {"RAGTUNE_CRASH_KILLS": str(args.kills)})]
    runs += [("tests/bot/test_load.py", {})] * args.floods
    runs += [("tests/bot/test_adversarial.py", {"RAGTUNE_ADVERSARIAL_TEXTS": str(args.texts)})]
    writers = {"RAGTUNE_WRITERS": str(args.writers), "RAGTUNE_WRITE_ROUNDS": str(args.rounds)}
    runs += [("tests/bot/test_concurrent_writers.py", writers)]
    runs += [("tests/knowledge/test_concurrency.py", {})] * 3  # the two-process races, again
    results = []
    for path, env in runs:
        passed, figures, seconds = run_tests(path, env)
        results.append({"test": path, "env": env, "passed": passed, "figures": figures,
                        "seconds": round(seconds, 1)})  # fmt: skip
        print(f"{'PASS' if passed else 'FAIL'} {path} {env or ''} ({seconds:.0f} s)", flush=True)
        for line in figures:
            print(f"    {line}", flush=True)
    report("soak", {"passed": all(r["passed"] for r in results), "runs": results})
    sys.exit(0 if all(r["passed"] for r in results) else 1)


if __name__ == "__main__":
    main()
