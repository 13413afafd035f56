"""The exceptions ckptw raises.

Every failure inside ckptw is a :class:`ckptw.Error`. Each carries ``path``
(the file or directory involved, or None), ``key_path`` (where in the saved
object, ``"optimizer.state.3.exp_avg"``, or None) and, for I/O failures, the
``errno`` and ``filename`` of :class:`OSError`. ``str(e)`` already names them.

An exception raised by your own code that ckptw called (a ``pre_commit`` or
``post_commit`` hook, a barrier's ``execute_barrier``) comes back as itself,
with its traceback, not wrapped in one of these.
"""

import builtins
import pickle


class Error(RuntimeError):
    """Anything that went wrong inside ckptw."""

    path = None
    key_path = None


class IoError(Error, OSError):
    """A system call failed (open, write, fsync, rename, ...): ``errno`` says why.

    Built as an OSError: ``IoError(errno, strerror, filename)``.
    """

    # RuntimeError comes first in the MRO; OSError's own constructor is what
    # sets errno, strerror and filename.
    def __new__(cls, *args):
        return OSError.__new__(cls, *args)

    def __init__(self, *args):
        OSError.__init__(self, *args)


class NotFoundError(IoError, builtins.FileNotFoundError):
    """A file or directory that must exist does not (ENOENT): also a :class:`FileNotFoundError`."""


class FormatError(Error, ValueError):
    """An object cannot be saved in the .pt format, or a file is not a valid (or committed) checkpoint."""


class UnpicklingError(FormatError, pickle.UnpicklingError):
    """A file's pickle holds what ``torch.load(weights_only=True)`` refuses (a global or call outside
    its allow-list), or is malformed: also a :class:`pickle.UnpicklingError`, as torch.load's refusals are.
    """


class UsageError(Error, ValueError):
    """ckptw was called wrongly: a bad config value, a write after close(), an unsupported option."""


class NotFileLikeError(UsageError, AttributeError):
    """``f`` of ckptw.save / ckptw.load is neither a path nor a file-like object: also an
    :class:`AttributeError`, as torch.save's and torch.load's refusal of it is."""


class CommitAborted(Error):
    """A checkpoint was not committed: some rank failed before the ranks agreed on it."""


class TimeoutError(Error, builtins.TimeoutError):
    """A bounded wait (a barrier, close()) ran out of time."""


__all__ = ["Error", "IoError", "NotFoundError", "FormatError", "UnpicklingError", "UsageError", "NotFileLikeError", "CommitAborted",
           "TimeoutError"]
