"""One-line error messages, for errors that reach the command line as they are."""

from __future__ import annotations


def one_line(text) -> str:
    """``text`` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(text).split())


class PathError(ValueError):
    """An error about one file or folder; ``str`` is ``MESSAGE`` filled with the path and the
    reason, on one line whatever the reason's source (a decoder, Keras, the OS) said."""

    MESSAGE = "{path}: {reason}"

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = one_line(reason)
        super().__init__(self.MESSAGE.format(path=self.path, reason=self.reason))

    def __reduce__(self):
        return (type(self), (self.path, self.reason))
