"""`.gradlint_cache/`: a target whose inputs have not changed is answered from its last report entry.

As pytest, mypy and ruff keep theirs: the key holds everything that can change the answer (the target
string, gradlint's, torch's and Python's versions, the options as data), and each entry records the
content hash of every user source file the target's import pulled in (its own file and the local modules
it imports), checked on every lookup. So an edit to a helper module two imports away re-checks the
target, and nothing here imports torch. Writes are atomic (a temporary file renamed into place), so
concurrent runs never read half an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from gradlint import __version__

DEFAULT_DIR = ".gradlint_cache"
_LAYOUT = "v1"  # bump when an entry's layout changes: old entries are then never read
_README = "Created by gradlint: cached check results. Safe to delete (or run `gradlint clean`).\n"


def _torch_version() -> str:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "none"


def file_digest(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


class Cache:
    """One cache directory. `lookup` and `store` never raise for I/O problems: a cache that cannot be
    read or written is a cache miss, never a failed check."""

    def __init__(self, directory: str | Path = DEFAULT_DIR) -> None:
        self.directory = Path(directory)

    def key(self, target: str, options: dict[str, Any]) -> str:
        payload = {
            "target": target, "options": options, "gradlint": __version__, "torch": _torch_version(),
            "python": sys.version.split()[0], "cwd": os.getcwd(),
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / _LAYOUT / f"{key}.json"

    def lookup(self, target: str, options: dict[str, Any]) -> dict[str, Any] | None:
        """The stored report entry, when every source file it was computed from is unchanged."""
        try:
            record = json.loads(self._path(self.key(target, options)).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        files = record.get("files")
        if not isinstance(files, dict) or not files:
            return None
        if any(file_digest(path) != digest for path, digest in files.items()):
            return None
        entry = record.get("entry")
        return entry if isinstance(entry, dict) else None

    def store(self, target: str, options: dict[str, Any], entry: dict[str, Any], sources: list[str]) -> bool:
        """Record `entry` for later runs. Only a target whose source files are all known and readable is
        stored: without them, a later run could not tell whether the answer still holds."""
        digests = {os.path.abspath(p): file_digest(p) for p in sources}
        if not digests or any(d is None for d in digests.values()):
            return False
        path = self._path(self.key(target, options))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._mark()
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"target": target, "files": digests, "entry": entry}, handle)
            os.replace(temporary, path)
        except OSError:
            return False
        return True

    def put_run(self, options: dict[str, Any], data: dict[str, Any]) -> None:
        """What a run with these options needs beyond its entries (the charts' lines), for a run of hits."""
        path = self.directory / _LAYOUT / f"run-{self.key('', options)}.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
            os.replace(temporary, path)
        except OSError:
            pass

    def get_run(self, options: dict[str, Any]) -> dict[str, Any] | None:
        try:
            data = json.loads((self.directory / _LAYOUT / f"run-{self.key('', options)}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _mark(self) -> None:
        """A README and a .gitignore, as pytest and ruff leave in theirs, so the folder explains itself."""
        for name, text in (("README", _README), (".gitignore", "*\n")):
            marker = self.directory / name
            if not marker.exists():
                marker.write_text(text, encoding="utf-8")

    def clear(self) -> bool:
        """Remove the cache directory; True when there was one."""
        if not self.directory.exists():
            return False
        shutil.rmtree(self.directory, ignore_errors=True)
        return True


def user_sources(exclude: tuple[str, ...] = ()) -> list[str]:
    """Source files of the modules now imported that are not the standard library or an installed package:
    the user's model files and their local imports, rule directories, and gradlint itself when it runs
    from a checkout. Called right after a target is loaded, this is what its answer depends on."""
    import sysconfig

    paths = sysconfig.get_paths()
    library = tuple(os.path.normcase(os.path.abspath(paths[k])) + os.sep for k in ("stdlib", "platstdlib", "purelib", "platlib"))
    found = set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file or not file.endswith(".py") or not os.path.isabs(file) or not os.path.isfile(file):
            continue  # torch's `_classes`/`_ops` name a bare file that is nowhere on disk
        normal = os.path.normcase(os.path.abspath(file))
        if normal.startswith(library) or (exclude and normal.startswith(exclude)):
            continue
        found.add(os.path.abspath(file))
    return sorted(found)
