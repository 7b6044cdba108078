"""CPU instructions per command on Courier's service path, counted by callgrind.

    .venv/bin/python -m benchmarks.instructions [--commands 2000] [--in-flight 1000]

Commands per second on a shared machine move by a fifth from one run to the next; the
instructions the Courier process executes for the same work hardly do (two runs agree
within 0.2 %; the figure per command, a difference of two runs, within a few per cent), so
this is the figure to compare two versions of the code with. Courier runs in a
process under `valgrind --tool=callgrind` (about 100 times slower), the broker and the
simulated devices outside it. Two runs, of N and 2N commands after the same start-up: their
difference divided by N is what one command costs, start-up and shutdown left out.
Needs valgrind (`apt-get install valgrind`).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import e2e
from benchmarks.bench import register
from benchmarks.harness import PresenceWatch, Simulator, start_broker

DEVICES = 50


async def _child(commands: int, in_flight: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir)
        broker = start_broker(path)
        simulator = Simulator(broker, "bench", "sim", DEVICES)
        watch = PresenceWatch(broker, "bench", "presence")
        try:
            await watch.start()
            store = path / "service.db"
            await register(store, simulator.device_ids)
            simulator.start()
            await watch.wait_for(simulator.device_ids)
            async with e2e.courier_in_process(broker, "bench", store) as courier:
                await e2e.wait_online(courier, simulator.device_ids)
                await e2e.run_window(courier, simulator.device_ids, commands, in_flight)
        finally:
            simulator.stop()
            await watch.stop()
            broker.stop()


def under_callgrind(python_args: list[str], out: str = "/dev/null") -> int:
    """Instructions of one Python process run with `python_args` under callgrind."""
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    done = subprocess.run(
        [*valgrind, sys.executable, *python_args],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"the callgrind run failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def _count(commands: int, in_flight: int, workdir: Path) -> int:
    """Instructions of one child process running `commands` commands."""
    child = ["-m", "benchmarks.instructions", "--child", str(commands), "--in-flight"]
    return under_callgrind([*child, str(in_flight)], str(workdir / f"callgrind.{commands}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=1000)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        import uvloop

        uvloop.run(_child(args.child, args.in_flight))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as workdir:
        small = _count(args.commands, args.in_flight, Path(workdir))
        large = _count(2 * args.commands, args.in_flight, Path(workdir))
    per_command = (large - small) / args.commands
    print(
        f"{args.commands:,} and {2 * args.commands:,} commands, {args.in_flight} in flight: "
        f"{small:,} and {large:,} instructions; {per_command:,.0f} per command"
    )


if __name__ == "__main__":
    main()
