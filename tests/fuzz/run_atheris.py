#!/usr/bin/env python3
"""Run one fuzz target under atheris (libFuzzer) for as long as you like, by hand.

Usage::

    pip install atheris            # or: pip install -e '.[fuzz]'
    python tests/fuzz/run_atheris.py TARGET [libFuzzer options…]
    python tests/fuzz/run_atheris.py stratum_session -max_total_time=600 -jobs=1

TARGET is one of the names in ``targets.TARGETS`` (``--list`` prints them). The target's
corpus directory ``tests/fuzz/corpus/TARGET`` is the first corpus, so libFuzzer reads its
inputs and writes the new interesting inputs it finds there: commit the ones worth
keeping (the suite replays all of them). A crash or a hang stops the run and leaves the
input in ``crash-…`` in the current directory; add it to the corpus with
``harness.keep`` once fixed.

Not run by the test suite (which replays the corpus and runs short hypothesis searches).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for path in (HERE, ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def main(argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports():
        from harness import check
        from targets import CORPUS, TARGETS

    if len(argv) < 2 or argv[1] == "--list":
        print("targets:", " ".join(sorted(TARGETS)))
        raise SystemExit(0 if len(argv) >= 2 else 2)
    # Instrumented code runs several times slower: a hang is five deadlines here.
    target = replace(TARGETS[argv[1]], deadline=TARGETS[argv[1]].deadline * 5)
    corpus = CORPUS / target.name
    corpus.mkdir(parents=True, exist_ok=True)
    options = [opt for opt in argv[2:] if opt.startswith("-")]
    corpora = [opt for opt in argv[2:] if not opt.startswith("-")] or [str(corpus)]

    def one_input(data: bytes) -> None:
        check(target, data)

    atheris.Setup([argv[0], *options, *corpora], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
