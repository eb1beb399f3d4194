"""Exception hierarchy: every refusal names the field, the value and what is allowed."""

from __future__ import annotations

from typing import Any, ClassVar


class _Missing:
    """The value of a problem whose field was not given at all (a singleton that pickles)."""

    _instance: ClassVar[_Missing | None] = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<missing>"

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""``InputError.value`` of a required field that was absent."""


class MicroneedlingError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(MicroneedlingError, ValueError):
    """A user input was refused.

    Parameters
    ----------
    field:
        Dotted path of the offending field, e.g. ``sessions[2].needle_length_mm``.
    value:
        The value that was given.
    allowed:
        What would have been accepted, in words.
    """

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}: got {value!r}; allowed: {allowed}")

    def __reduce__(self) -> tuple[Any, ...]:  # pickles (e.g. from a Dask worker) with its fields
        return (type(self), (self.field, self.value, self.allowed))


class InputFileError(MicroneedlingError, ValueError):
    """An input file (course, patient, trial spec, population, ...) failed validation; holds every
    problem found, one :class:`InputError` each."""

    def __init__(self, problems: list[InputError], source: str = "input") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems, self.source))

    def one_line(self) -> str:
        """First problem, for a CLI one-line reason."""
        first = self.problems[0]
        more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"{self.source}: {first}{more}"


class CourseValidationError(InputFileError):
    """A course file failed validation."""


class InputFileFieldError(InputFileError, InputError):
    """An input file failed validation, for callers that catch :class:`InputError`.

    It holds every problem, like any :class:`InputFileError`, and is also an :class:`InputError`
    whose ``field``, ``value`` and ``allowed`` are those of the first problem (the trial spec, the
    population and the delivery-validation rows: their callers read one field from the error).
    """

    def __init__(self, problems: list[InputError], source: str = "input") -> None:
        if not problems:
            problems = [InputError(source, "<no details>", "a valid input file")]
        self.problems = problems
        self.source = source
        first = problems[0]
        self.field, self.value, self.allowed = first.field, first.value, first.allowed
        lines = "\n".join(f"  - {p}" for p in problems)
        # not InputFileError.__init__: its super() call would reach InputError's signature
        MicroneedlingError.__init__(self, f"{source}: {len(problems)} problem(s)\n{lines}")


class ParameterError(MicroneedlingError, KeyError):
    """An unknown parameter name, a malformed parameter file, or a unit mismatch."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnitError(ParameterError):
    """A unit string could not be parsed or converted."""
