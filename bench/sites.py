"""How often do construction sites read from the source (gradlint.sites, what `gradlint.check(model)` uses on
an instance) agree with the sites the recorder sees while a file target is built (gradlint.recorder)?

For every class target defined in the fixture files (built without arguments, as `gradlint check PATH` finds
them), the model is built once under the recorder and its modules' recorded sites are compared with the sites
read from the source of the same instance. A static site that differs from the recorded one is a wrong
answer; one that is missing falls back to the forward line. Factory targets are left out: their root is
built by gradlint's loader, not by a line of the user's.

    python3 bench/sites.py [FOLDER ...]        (default: fixtures/cases fixtures/zoo fixtures/rules fixtures/suppress)
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gradlint.discover import definitions  # noqa: E402
from gradlint.load import load_target, restored_interpreter_state  # noqa: E402
from gradlint.sites import construction_record  # noqa: E402
from gradlint.state import preserved  # noqa: E402

DEFAULT = ("fixtures/cases", "fixtures/zoo", "fixtures/rules", "fixtures/suppress")


def compare(target: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    with restored_interpreter_state(), preserved():
        loaded = load_target(target)
        static = construction_record(loaded.model, None)
        for name, module in loaded.model.named_modules():
            if not name:
                continue  # the root: built by gradlint's loader here, by the user's line in a notebook
            recorded, read = loaded.record.site_of(module), static.site_of(module)
            if recorded is None and read is None:
                counts["neither"] += 1
            elif recorded is None:
                counts["static only"] += 1
            elif read is None:
                counts["missing (forward line)"] += 1
            elif (recorded.path, recorded.line) == (read.path, read.line):
                counts["agree"] += 1
            else:
                counts["WRONG"] += 1
                print(f"  {target} {name}: recorded {recorded}, read {read}")
    return counts


def main() -> None:
    os.chdir(ROOT)
    folders = sys.argv[1:] or DEFAULT
    total: Counter[str] = Counter()
    targets = 0
    for folder in folders:
        for path in sorted(Path(folder).glob("*.py")):
            found, _ = definitions(path, path.as_posix())
            for target in found:
                name = target.rsplit(":", 1)[1]
                if not name[:1].isupper():
                    continue  # a factory function
                try:
                    counts = compare(target)
                except Exception as exc:  # a fixture that does not build here (a missing extra)
                    print(f"  {target}: skipped ({type(exc).__name__}: {str(exc)[:80]})")
                    continue
                targets += 1
                total += counts
    modules = sum(total.values())
    print(f"\n{targets} class targets, {modules} submodules")
    for key in ("agree", "missing (forward line)", "WRONG", "static only", "neither"):
        share = 100 * total[key] / modules if modules else 0.0
        print(f"  {key:<24} {total[key]:>6}  {share:5.1f}%")


if __name__ == "__main__":
    main()
