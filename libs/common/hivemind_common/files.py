"""Small file helpers shared by the services."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from hivemind_common.model_registry import sha256_file

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=16)
def _sha256_stamped(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


def file_sha256(path: Path) -> str:
    """sha256 of a file, computed once per (path, size, mtime) in this process."""
    st = path.stat()
    return _sha256_stamped(str(path), st.st_size, st.st_mtime_ns)


def keep_json(directory: Path, name: str, data: Any, *, what: str) -> bool:
    """``data`` as JSON in ``directory/name``, atomically (a temp file renamed into place and
    removed on failure); for caches, so a failure only logs and returns False."""
    tmp: str | None = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".cache-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, directory / name)
        tmp = None
        return True
    except (OSError, TypeError, ValueError) as exc:
        log.warning("could not keep the %s in %s: %s", what, directory, exc)
        return False
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
