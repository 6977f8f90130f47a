"""Writing files whole: a reader sees the old file or the new one, never a part (an interrupted write leaves no
partial file behind)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import BinaryIO, Callable, Union


def atomic_write(path: Union[str, os.PathLike], write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(f)`` on a binary temporary file beside ``path`` (same filesystem), flush it to disk, then
    move it into place; the file gets the usual permissions (0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: Union[str, os.PathLike], text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))
