"""The base class of errors that a user fixes from the message alone.

Why one base: the entry points print such an error as one line (the message
names the file or folder and the cause) instead of a traceback through torch
or transformers, which buries the one line that matters. Bad configs, unreadable
corpora and tokenizers, a run folder in use and a diverged run are of this kind;
programming errors are not, and keep their traceback.
"""


class UserError(Exception):
    """A problem with the input or the environment; the message alone says what and where."""


class EvaluationError(UserError):
    """A model, a task or its data could not be scored; what could be scored is already written.

    Raised by the evaluation functions (`babykd.evaluate.run`, `babykd.evaluation.aoa.run`,
    `babykd.evaluation.finetune.run`) that other modules call in-process; only their command lines
    turn it into an exit status.
    """
