"""Calling the functions inside RASP expressions (Map/SequenceMap functions, Select predicates) at compile time.

An ArithmeticError, TypeError or ValueError raised by such a function means "undefined for this input" (that
input gets no output, or a key is not selected). Any other exception is a bug in the user's function and is
re-raised as a `UserFunctionError` naming the expression and the input, with the original exception chained.
"""

from __future__ import annotations

from typing import Any, Callable

UNDEFINED_ERRORS = (ArithmeticError, TypeError, ValueError)


class UserFunctionError(ValueError):
    """A function inside a RASP expression raised an unexpected exception while the program was compiled."""


def failure_message(what: str, error: BaseException, args: tuple) -> str:
    """`what` (e.g. "Map map_3") raised `error` on input `args`, as one sentence."""
    shown = repr(args[0]) if len(args) == 1 else repr(tuple(args))
    return f"the function of {what} raised {type(error).__name__}: {error} on input {shown}"


def guarded(f: Callable, what: str) -> Callable:
    """`f`, re-raising every exception outside UNDEFINED_ERRORS as a UserFunctionError naming `what`."""

    def call(*args):
        try:
            return f(*args)
        except UNDEFINED_ERRORS:
            raise
        except Exception as e:  # noqa: BLE001 - any other failure of user code is reported with its expression
            raise UserFunctionError(failure_message(what, e, args)) from e

    return call


def safe(f: Callable, *args) -> Any:
    """`f(*args)`, or None if it raises one of UNDEFINED_ERRORS (a UserFunctionError is re-raised)."""
    try:
        return f(*args)
    except UserFunctionError:
        raise
    except UNDEFINED_ERRORS:
        return None
