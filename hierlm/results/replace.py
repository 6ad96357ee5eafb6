"""Put a freshly written directory in place of a saved result, touching nothing else.

:func:`hierlm.results.io.save` writes a result into a temporary sibling directory
and then calls :func:`replace_dir`.  What it may replace, and how:

* nothing at ``target``, or an empty directory: the temporary directory is renamed
  to ``target`` (one ``rename``, atomic);
* a saved hierlm result, that is a directory whose ``result.json`` says
  ``"format": "hierlm.FitResult"`` and that holds hierlm's own files and nothing
  else: it is renamed aside, the new one renamed in, and hierlm's files of the old
  one deleted;
* anything else (a file, a symbolic link, a folder of another program, a saved
  result to which other files were added): refused with
  :class:`~hierlm.errors.ResultFileError`, and left as it was.

Saves of several processes to one path write their files side by side, then take
turns at the renames: :func:`folder_lock` holds an exclusive ``flock`` on the parent
folder while one save checks and swaps, so no save ever looks at a result that
another is halfway through moving aside.  The last rename wins and the folder always
holds one complete result.  (The lock is advisory and only between hierlm saves; where
the system has no ``flock`` (Windows) or the file system refuses it, saves go
unlocked and the check-then-rename loop below, which re-checks whatever it finds,
is what keeps other files safe.)  Between moving the old result
aside and renaming the new one in (two system calls) the path is briefly absent; an
interrupt there (Ctrl-C) puts the old result back.  POSIX has no atomic swap of two
non-empty directories, hence the two renames.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from hierlm.errors import ResultFileError

__all__ = ["check_replaceable", "discard", "folder_lock", "replace_dir"]

#: Tries before giving up when other processes keep replacing the same path.
ATTEMPTS = 100


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on the directory ``folder`` for the
    block; waits for another holder (a Ctrl-C interrupts the wait).

    No lock where the platform or file system has none: the block then runs as is.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> with folder_lock(Path(tempfile.mkdtemp())):
    ...     print("alone")
    alone
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not readable: go unlocked (the checks still hold)
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        yield  # the lock goes with the descriptor
    finally:
        os.close(fd)


def _is_saved_result(json_file: Path, fmt: str) -> bool:
    try:
        with json_file.open(encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == fmt


def check_replaceable(target: Path, own: Iterable[str], fmt: str) -> None:
    """Raise :class:`~hierlm.errors.ResultFileError` unless ``target`` is absent, an
    empty directory, or a saved result of format ``fmt`` holding only the files
    named in ``own`` (regular files, no links).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "notes.txt").write_text("mine")
    >>> check_replaceable(folder, ["result.json"], "hierlm.FitResult")
    Traceback (most recent call last):
    ...
    hierlm.errors.ResultFileError: '...' exists and is not a saved hierlm result; ...
    """
    if not os.path.lexists(target):
        return
    if target.is_symlink() or not target.is_dir():
        raise ResultFileError(f"'{target}' exists and is not a saved hierlm result; "
                              f"choose another path")
    try:
        with os.scandir(target) as listing:
            # a regular file by the listing's own record of it (no link followed)
            names = {e.name: e.is_file(follow_symlinks=False) for e in listing}
    except OSError as exc:
        raise ResultFileError(f"cannot write '{target}': {exc.strerror or exc}") from None
    if not names:
        return
    json_name = next(iter(own))
    if json_name not in names or not _is_saved_result(target / json_name, fmt):
        raise ResultFileError(f"'{target}' exists and is not a saved hierlm result; "
                              f"choose another path (save never replaces other files)")
    own = set(own)
    foreign = sorted(n for n, regular in names.items() if n not in own or not regular)
    if foreign:
        raise ResultFileError(
            f"'{target}' holds files that hierlm did not write ({', '.join(foreign)}); "
            f"save never removes them: move them or choose another path")


def discard(folder: Path, own: Iterable[str]) -> None:
    """Delete hierlm's files ``own`` of ``folder``, then the folder if that left it
    empty (anything else found there is kept)."""
    for name in own:
        try:
            (folder / name).unlink()
        except FileNotFoundError:
            pass
    try:
        folder.rmdir()
    except OSError:
        pass


def replace_dir(tmp: Path, target: Path, own: Iterable[str], fmt: str) -> None:
    """Rename the directory ``tmp`` to ``target``, replacing a saved result there
    (see the module docstring).  ``tmp`` must be a sibling of ``target``.

    Raises
    ------
    ResultFileError
        ``target`` is not replaceable, or other processes kept replacing it.
    OSError
        A rename failed for another reason (the caller reports it).
    """
    own = list(own)
    for _ in range(ATTEMPTS):
        try:
            os.rename(tmp, target)  # to an absent path or over an empty directory
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR,
                                 errno.EISDIR):
                raise
        try:
            seen = os.lstat(target)
            check_replaceable(target, own, fmt)
        except FileNotFoundError:
            continue
        except ResultFileError:
            if _same_file(target, seen):
                raise
            continue  # replaced by another save while it was checked: check that one
        aside = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
        try:
            os.rename(target, aside)
        except FileNotFoundError:
            continue  # another save moved it first
        placed = False
        try:
            os.rename(tmp, target)
            placed = True
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                _put_back(aside, target, own)
                raise
            # another save put its result in meanwhile: ours replaces that one next
        except BaseException:
            _put_back(aside, target, own)
            raise
        discard(aside, own)
        if placed:
            return
    raise ResultFileError(f"could not replace '{target}': other processes keep replacing it")


def _same_file(path: Path, seen: os.stat_result) -> bool:
    try:
        now = os.lstat(path)
    except OSError:
        return False
    # the change time too: a folder another save renamed in may reuse the inode number
    # of one a third save has just deleted
    return ((now.st_dev, now.st_ino, now.st_ctime_ns)
            == (seen.st_dev, seen.st_ino, seen.st_ctime_ns))


def _put_back(aside: Path, target: Path, own: list[str]) -> None:
    """The previous result back at ``target``, or discarded where another took its
    place."""
    try:
        os.rename(aside, target)
    except OSError:
        discard(aside, own)
