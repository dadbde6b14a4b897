"""Run ``celebamask`` in this process with one shard task held at a gate, to orphan it on purpose.

    GATE=/tmp/x/gate GATE_SHARD=5 python -m tests.orphan_at build SOURCE STORE --jobs 2 ...

The task of shard ``GATE_SHARD`` first opens the FIFO ``GATE`` for reading, before it builds
anything: it waits there until the test opens the FIFO for writing, and stays until the test
closes it (a test sees the task waiting when a non-blocking open for writing succeeds). When the
task ends it writes its outcome to ``GATE.done``: ``written``, or its error's problem. The hook
runs in the worker processes because the shard tasks name this module's function.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from celebamask.build.worker import ShardResult, build_shard


def gated_build_shard(ref: Any, samples: Any, config: Any, store: Any, shard: int, *rest: Any,
                      **options: Any) -> ShardResult:
    if shard != int(os.environ["GATE_SHARD"]):
        return build_shard(ref, samples, config, store, shard, *rest, **options)
    gate = os.environ["GATE"]
    with open(gate, "rb") as waiting:
        waiting.read()  # returns once the test has opened and closed the FIFO
    result = build_shard(ref, samples, config, store, shard, *rest, **options)
    with open(f"{gate}.done.tmp", "w") as outcome:
        outcome.write("written" if result.error is None else result.error.problem)
    os.replace(f"{gate}.done.tmp", f"{gate}.done")
    return result


if __name__ == "__main__":
    import celebamask.build.orchestrator as orchestrator
    import tests.orphan_at as hook  # by its module name, so the workers can import it
    from celebamask.cli import main

    orchestrator.build_shard = hook.gated_build_shard  # type: ignore[assignment]
    sys.exit(main(sys.argv[1:]))
