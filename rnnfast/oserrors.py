"""An OSError in one line: the path, what went wrong and, where it is known, what to do."""

import errno

_OS_ERROR_HINTS = {
    errno.ENOSPC: "free some space or choose another directory",
    errno.EDQUOT: "free some space or choose another directory",
    errno.EROFS: "choose a directory on a writable file system",
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.ENAMETOOLONG: "choose a shorter name",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
}


def describe(err: OSError) -> str:
    """One line: the path (both of a rename), what went wrong and, if known, what to do."""
    what = err.strerror or str(err) or type(err).__name__
    hint = _OS_ERROR_HINTS.get(err.errno)
    where = "" if err.filename is None else f"{err.filename}: "
    if err.filename2 is not None:
        where = f"{err.filename} -> {err.filename2}: "
    return f"{where}{what}" + (f" ({hint})" if hint else "")
