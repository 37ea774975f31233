"""Exceptions whose messages name the bad value, where it came from and what is accepted."""


class EcrkitError(Exception):
    """Base class: the CLI prints these and exits non-zero; Ansible plugins re-raise them."""


class InputError(EcrkitError, ValueError):
    """A user-supplied value is not of the accepted form."""

    def __init__(self, source: str, value: object, accepted: str) -> None:
        self.source = source
        self.value = value
        self.accepted = accepted
        super().__init__(f"{source}: {value!r} is not accepted; expected {accepted}")


class FileFormatError(EcrkitError):
    """An existing file cannot be parsed; it is never overwritten."""

    def __init__(self, path: str, problem: str, source: str = "") -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{source} {path}: {problem}; the file was left untouched".lstrip())


class PathError(EcrkitError):
    """A user-given path that cannot be read or written as asked; nothing was written."""

    def __init__(self, source: str, path: str, problem: str) -> None:
        self.source = source
        self.path = path
        self.problem = problem
        super().__init__(f"{source} {path}: {problem}")
