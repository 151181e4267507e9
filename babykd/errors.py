"""The base class of errors that a user fixes from the message alone.

Why one base: the entry points print such an error as one line (the message
names the file or folder and the cause) instead of a traceback through torch
or transformers, which buries the one line that matters. Bad configs, unreadable
corpora and tokenizers, a run folder in use and a diverged run are of this kind;
programming errors are not, and keep their traceback.
"""

import errno


class UserError(Exception):
    """A problem with the input or the environment; the message alone says what and where."""


class ConfigError(UserError, ValueError):
    """A config file or override is invalid; the message names the file and the key.

    Here rather than in `babykd.config` so that the loss terms, which declare their own
    config fields and checks, can raise it without importing the config loader.
    """


class TeacherMismatchError(UserError, ValueError):
    """A teacher cannot be distilled into this student as configured (vocabulary, width, layers)."""


class EvaluationError(UserError):
    """A model, a task or its data could not be scored; what could be scored is already written.

    Raised by the evaluation functions (`babykd.evaluate.run`, `babykd.evaluation.aoa.run`,
    `babykd.evaluation.finetune.run`) that other modules call in-process; only their command lines
    turn it into an exit status.
    """


class DiskFullError(UserError, OSError):
    """A file could not be written for want of space or quota; nothing half-written is left, an older version stays.

    Why its own type: "[Errno 28] No space left on device" from a write names no file, and as a plain
    OSError it went through the evaluation commands as a traceback; as a UserError it is their one line.
    """

    #: The errnos of a full disk and what each means to the user.
    CAUSES = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded"}

    def __str__(self) -> str:
        return (f"{self.filename}: not written, {self.CAUSES[self.errno]} ({errno.errorcode[self.errno]}); "
                "free space there and run the same command again (what was written before is kept)")
