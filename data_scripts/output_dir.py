"""Output folders the package may write into: its own (marked), new or empty ones, never a user's without a flag.

Every command that writes a folder (`build_dataset --output-dir`, `train.py --output-dir`) goes through
[`claim_output_dir`]: it refuses a path that is a file, and a non-empty folder that holds no [`MARKER_NAME`] file
unless `--overwrite-output-dir` is given; it creates the folder, checks that it can write there (a read-only folder
fails now, not at the first checkpoint) and leaves the marker. [`output_dir_lock`] keeps two runs out of one folder.
Only the standard library: the data scripts import this too.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows has no flock: there the lock is skipped
    fcntl = None

MARKER_NAME = ".luong-chatbot"  # written into every folder the package creates or is allowed into
OVERWRITE_FLAG = "--overwrite-output-dir"


class OutputDirError(ValueError):
    """The output folder cannot be used; the message is one line naming the folder and the way out."""


def new_folders_for(path: Path) -> list[Path]:
    """The folders `mkdir(parents=True)` would create for `path`, outermost first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return list(reversed(missing))


def remove_created_folders(created: list[Path]) -> None:
    """Removes the folders [`claim_output_dir`] created, innermost first, as long as they hold nothing else."""
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            if {entry.name for entry in os.scandir(folder)} <= {MARKER_NAME}:
                Path(folder, MARKER_NAME).unlink(missing_ok=True)
                folder.rmdir()


def _check_writable(path: Path) -> None:
    try:
        with tempfile.TemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as error:
        raise OutputDirError(f"{path}: cannot write into this folder ({error.strerror or error})") from None


def is_package_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder the package created (or was allowed into): it holds the marker file."""
    return Path(path, MARKER_NAME).is_file()


def claim_output_dir(path: str | os.PathLike, overwrite: bool = False, tool: str = "luong-chatbot") -> list[Path]:
    """Makes `path` a writable folder of the package's; returns the folders it had to create (outermost first).

    Args:
        path (`str` or `os.PathLike`):
            The output folder.
        overwrite (`bool`, *optional*, defaults to `False`):
            Write into a non-empty folder the package did not create (the user's `--overwrite-output-dir`).
        tool (`str`, *optional*, defaults to `"luong-chatbot"`):
            Which command claims it, recorded in the marker.

    Raises:
        [`OutputDirError`]: `path` is not a folder, is a foreign non-empty folder, or cannot be written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        kind = "a file" if path.is_file() else "something that is not a folder"
        raise OutputDirError(f"{path}: expected an output folder, found {kind}")
    if path.is_dir() and not is_package_folder(path) and any(path.iterdir()) and not overwrite:
        raise OutputDirError(
            f"{path}: this folder holds files that luong-chatbot did not write; pick a new or empty folder, "
            f"or pass {OVERWRITE_FLAG} to write into it anyway (files with the same names get replaced)"
        )
    created = new_folders_for(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputDirError(f"{path}: cannot create this folder ({error.strerror or error})") from None
    try:
        _check_writable(path)
        if not is_package_folder(path):
            Path(path, MARKER_NAME).write_text(json.dumps({"created_by": tool}) + "\n", encoding="utf-8")
    except (OutputDirError, OSError) as error:
        remove_created_folders(created)
        if isinstance(error, OutputDirError):
            raise
        raise OutputDirError(f"{path}: cannot write into this folder ({error.strerror or error})") from None
    return created


@contextlib.contextmanager
def output_dir_lock(path: str | os.PathLike, command: str) -> Iterator[None]:
    """Holds an exclusive lock on claimed folder `path`: a `flock` on its marker file, freed even if the process dies.

    Raises:
        [`OutputDirError`]: another process holds the lock.
    """
    if fcntl is None:
        yield
        return
    descriptor = os.open(Path(path, MARKER_NAME), os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise OutputDirError(
                f"{path}: another luong-chatbot command is writing into this folder; wait for it to finish, "
                f"or give this {command} another output folder"
            ) from None
        yield
    finally:
        os.close(descriptor)  # closing frees the lock


def is_regular_file_or_folder(path: str | os.PathLike) -> bool:
    """Whether `path` (after symlinks) is a regular file or a folder: not a device, FIFO or socket."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode)


def default_file_mode() -> int:
    """The mode `open()` gives a new file under the current umask (0644 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
