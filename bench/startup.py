"""Start-up time of the light commands against the libraries a Typer CLI cannot do without.

    python bench/startup.py              # 10 runs of each, interleaved
    python bench/startup.py --runs 30
    python bench/startup.py --against /tmp/old/src   # also another checkout's src, side by side
    python bench/startup.py --no-bytecode            # every run recompiles llamavid's sources

Each run is a fresh `python` process: `-c "import typer, rich"` (the floor), `-m llamavid_cli
--help` and `-m llamavid_cli cache list` on an empty cache, the other light commands (`--version`,
`models list` with no model in the hub cache, a usage error, one TAB of bash completion),
`import torch` to show what is no longer paid, and a one-command typer app that is run (what a typer >= 0.24 command costs
without cli/coercion.py). Runs are interleaved so a busy machine slows all of them alike.
Bytecode is cached (in the temp folder) as it is for an installed package, even where
PYTHONDONTWRITEBYTECODE is set; `--no-bytecode` measures a checkout that recompiles each run.
`--against SRC` adds `--help` and `cache list` run from another source tree (a checkout of an
older commit), so before and after are measured in the same run.
Target (issue 8): the median of each llamavid command is at most 2x the floor's. Prints a
table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 2.0

CASES = {
    "import typer, rich": ["-c", "import typer, rich"],
    "llamavid --help": ["-m", "llamavid_cli", "--help"],
    "llamavid cache list": ["-m", "llamavid_cli", "cache", "list"],
    "llamavid --version": ["-m", "llamavid_cli", "--version"],
    "llamavid models list": ["-m", "llamavid_cli", "models", "list"],
    "llamavid ask (usage error)": ["-m", "llamavid_cli", "ask"],
    "llamavid su<TAB> (completion)": ["-m", "llamavid_cli"],
    "import torch (for scale)": ["-c", "import torch"],
    # typer >= 0.24 converts every parameter value through pydantic, so running any command costs
    # that import; this one-command app shows the part of `cache list` that is typer's own
    "typer app, one command run": [
        "-c",
        "import typer\napp = typer.Typer()\n@app.command()\ndef f(json: bool = False): pass\napp([], standalone_mode=False)",
    ],
}


TARGETED = ("llamavid --help", "llamavid cache list")  # the target; the others are shown beside them
EXIT_CODE = {"llamavid ask (usage error)": 2}
CASE_ENV = {
    "llamavid su<TAB> (completion)": {
        "_LLAMAVID_COMPLETE": "complete_bash",
        "COMP_WORDS": "llamavid su",
        "COMP_CWORD": "1",
    }
}


def with_src(env: dict[str, str], src: Path) -> dict[str, str]:
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))}


def wall(args: list[str], env: dict[str, str], code: int = 0) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if done.returncode != code:
        raise SystemExit(f"python {' '.join(args)} exited {done.returncode}, expected {code}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--against", type=Path, help="another checkout's src folder, measured side by side")
    parser.add_argument("--no-bytecode", action="store_true", help="recompile llamavid's sources in every run")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="llamavid-bench-startup-"))
    env = {
        **os.environ,
        "LLAMAVID_CACHE_DIR": str(workdir / "cache"),
        "LLAMAVID_CONFIG_DIR": str(workdir / "config"),
        "HF_HOME": str(workdir / "hf"),
    }
    if args.no_bytecode:  # the libraries' .pyc files are read; ours are never written
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:  # bytecode as an installed package has it (pip compiles on install), out of the checkout
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    cases = {name: (argv, with_src({**env, **CASE_ENV.get(name, {})}, ROOT / "src")) for name, argv in CASES.items()}
    if args.against:
        for name in TARGETED:
            cases[f"{name} (against)"] = (CASES[name], with_src(env, args.against.resolve()))
    for name, (argv, case_env) in cases.items():  # warm the page cache and the .pyc files
        wall(argv, case_env, EXIT_CODE.get(name, 0))
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, (argv, case_env) in cases.items():
            times[name].append(wall(argv, case_env, EXIT_CODE.get(name, 0)))

    floor = statistics.median(times["import typer, rich"])
    rows = {
        name: {
            "median_s": statistics.median(t),
            "min_s": min(t),
            "max_s": max(t),
            "ratio": statistics.median(t) / floor,
        }
        for name, t in times.items()
    }
    print(f"{'command':<38}{'median (s)':>12}{'min (s)':>10}{'max (s)':>10}{'x floor':>10}")
    for name, row in rows.items():
        print(f"{name:<38}{row['median_s']:>12.3f}{row['min_s']:>10.3f}{row['max_s']:>10.3f}{row['ratio']:>10.2f}")
    passed = all(rows[name]["ratio"] <= TARGET for name in TARGETED)
    print(f"target: llamavid --help and cache list within {TARGET:g}x of the floor: {'pass' if passed else 'FAIL'}")
    light = [name for name in CASES if name.startswith("llamavid")]
    print(f"all light llamavid commands: at most {max(rows[name]['ratio'] for name in light):.2f}x the floor")
    print(
        json.dumps(
            {
                "runs": args.runs,
                "python": sys.version.split()[0],
                "cpus": os.cpu_count(),
                "bytecode": not args.no_bytecode,
                "against": str(args.against) if args.against else None,
                "target_ratio": TARGET,
                "pass": passed,
                "cases": {name: {k: round(v, 4) for k, v in row.items()} for name, row in rows.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
