"""Paths a user names (run, sweep and resume dirs, `report --out`, `task.path`), checked in one place before
anything is read or written: every way the OS can refuse a path (an empty one, a name or a whole path too
long, a symlink loop, a dangling link, a file where a folder must be, no permission) becomes one line that
names the path and the setting it came from, instead of an OSError at the first write.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

NAME_MAX_BYTES = 255  # the longest file name ext4, XFS, btrfs, tmpfs, NFS and APFS take
PATH_MAX_BYTES = 4096  # the longest path Linux takes (PATH_MAX, the terminating NUL included)
SHOWN_CHARS = 100  # a path longer than this is shortened in messages


class PathError(ValueError):
    """A path the OS cannot use as asked; the message is the one line the user sees."""


def shown(path: object) -> str:
    """A path for a one-line message: the start and end of a very long one."""
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)
    if len(text) <= SHOWN_CHARS:
        return text
    half = SHOWN_CHARS // 2
    return f"{text[:half]}…{text[-half:]} ({len(os.fsencode(text)):,} bytes)"


def checked(path: str | os.PathLike[str] | None, what: str, kind: str = "path") -> Path:
    """`path` as a Path, unless the OS could not use it: PathError (one line) for an empty path, a NUL
    byte, a name over NAME_MAX_BYTES or a path over PATH_MAX_BYTES, a name this locale cannot encode, and
    along its existing part a symlink loop, a dangling link, a file where a folder must be or a folder
    that may not be searched. What does not exist yet is not an error here. `kind` names what the path
    must be ("directory path") in the message about an empty one."""
    text = os.fspath(path) if path is not None else ""
    if not text.strip():
        raise PathError(f"{what} must be a {kind}, got {text!r}")
    if "\0" in text:
        raise PathError(f"{what}: a path cannot hold a NUL byte: {shown(text)!r}")
    try:
        encoded = os.fsencode(text)
    except UnicodeEncodeError:
        raise PathError(f"{what}: {shown(text)} cannot be written in this system's file-name encoding "
                        f"({sys.getfilesystemencoding()})") from None
    long_name = next((part for part in Path(text).parts if len(os.fsencode(part)) > NAME_MAX_BYTES), None)
    if long_name is not None:
        raise PathError(f"{what}: a name in the path is {len(os.fsencode(long_name)):,} bytes, longer than the "
                        f"{NAME_MAX_BYTES} a file system takes: {shown(text)}")
    absolute = os.path.abspath(text)
    if len(encoded) >= PATH_MAX_BYTES or len(os.fsencode(absolute)) >= PATH_MAX_BYTES:
        raise PathError(f"{what}: the path is longer than the {PATH_MAX_BYTES - 1} bytes the OS takes: "
                        f"{shown(text)}")
    _walk(Path(absolute), what, text)
    return Path(text)


def _walk(absolute: Path, what: str, given: str) -> None:
    """Look at every existing component of `absolute`: links are followed and must end somewhere."""
    for prefix in [*reversed(absolute.parents), absolute]:
        try:
            info = os.lstat(prefix)
        except FileNotFoundError:
            return  # the rest does not exist yet
        except OSError as err:
            raise PathError(_refusal(what, given, prefix, err)) from None
        if stat.S_ISLNK(info.st_mode):
            try:
                info = os.stat(prefix)
            except FileNotFoundError:
                raise PathError(f"{what}: {shown(prefix)} is a symbolic link to nothing "
                                f"({shown(os.readlink(prefix))} does not exist): {shown(given)}") from None
            except OSError as err:
                raise PathError(_refusal(what, given, prefix, err)) from None
        if prefix != absolute and not stat.S_ISDIR(info.st_mode):
            raise PathError(f"{what}: {shown(prefix)} is a file, not a directory: {shown(given)}")


def _refusal(what: str, given: str, where: Path, err: OSError) -> str:
    reason = "a symbolic link loop" if err.errno == errno.ELOOP else (err.strerror or type(err).__name__).lower()
    if os.path.abspath(given) == os.path.abspath(where):
        return f"{what}: {shown(given)}: {reason}"
    return f"{what}: {shown(where)}: {reason}: {shown(given)}"


def describe(err: OSError, what: str, path: object) -> str:
    """One line for an OSError met while using `path` (the `what` setting)."""
    return _refusal(what, str(path), Path(err.filename) if err.filename else Path(str(path)), err)


def output_dir(path: str | os.PathLike[str] | None, what: str) -> Path:
    """A directory to write into (made if need be): `checked`, not an existing file, and its nearest
    existing ancestor lets this process create a folder in it (tried, then removed)."""
    directory = checked(path, what, "directory path")
    if directory.exists() and not directory.is_dir():
        raise PathError(f"{what}: {shown(directory)} is a file, not a directory")
    ancestor = Path(os.path.abspath(directory))
    while not ancestor.exists():
        ancestor = ancestor.parent
    try:
        shutil.rmtree(tempfile.mkdtemp(prefix=".resbench-probe-", dir=ancestor))
    except OSError as err:
        raise PathError(f"{what}: {shown(ancestor)} is not writable ({(err.strerror or str(err)).lower()}): "
                        f"{shown(directory)}") from None
    return directory


def input_dir(path: str | os.PathLike[str] | None, what: str) -> Path:
    """An existing directory to read: `checked`, there, a directory, and listable."""
    directory = checked(path, what, "directory path")
    if not directory.exists():
        raise PathError(f"{what}: no such directory: {shown(directory)}")
    if not directory.is_dir():
        raise PathError(f"{what}: {shown(directory)} is not a directory")
    try:
        with os.scandir(directory):
            pass
    except OSError as err:
        raise PathError(describe(err, what, directory)) from None
    return directory


def input_file(path: str | os.PathLike[str] | None, what: str, max_bytes: int) -> Path:
    """An existing regular file of at most `max_bytes` to read: never a device, a FIFO or a folder
    (reading /dev/zero or a pipe would not end), and never one too large to hold in memory."""
    file = checked(path, what, "file path")
    try:
        info = os.stat(file)
    except FileNotFoundError:
        raise PathError(f"{what}: no such file: {shown(file)}") from None
    except OSError as err:
        raise PathError(describe(err, what, file)) from None
    if stat.S_ISDIR(info.st_mode):
        raise PathError(f"{what}: {shown(file)} is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode)
                else "a device")
        raise PathError(f"{what}: {shown(file)} is {kind}, not a regular file")
    if info.st_size > max_bytes:
        raise PathError(f"{what}: {shown(file)} is {info.st_size / 2**20:,.0f} MiB; files up to "
                        f"{max_bytes / 2**20:,.0f} MiB are read")
    if not os.access(file, os.R_OK):
        raise PathError(f"{what}: {shown(file)}: permission denied")
    return file


READ_CHUNK_BYTES = 16 * 2**20  # a file is read in pieces of this size, so that a Ctrl-C is handled between two


def read_bytes(path: Path, what: str, max_bytes: int) -> bytes:
    """The bytes of an `input_file`, read in pieces and never more than `max_bytes` (a file that grew
    since it was checked is refused too)."""
    pieces, size = [], 0
    try:
        with open(path, "rb") as handle:
            while piece := handle.read(READ_CHUNK_BYTES):
                size += len(piece)
                if size > max_bytes:
                    raise PathError(f"{what}: {shown(path)} holds more than {max_bytes / 2**20:,.0f} MiB; files up "
                                    f"to {max_bytes / 2**20:,.0f} MiB are read")
                pieces.append(piece)
    except OSError as err:
        raise PathError(describe(err, what, path)) from None
    return b"".join(pieces)

