"""Interrupts that foreign code swallowed, kept until they can be raised.

Python runs a signal handler between two bytecodes of the main thread, and that may be inside a
callback that C code made into Python: numba's compiler (through llvmlite) calls Python while it
compiles, HDF5 and ctypes do too. An exception raised there, such as the ``KeyboardInterrupt``
of Ctrl-C or the ``Terminated`` of SIGTERM, cannot cross the C frames: Python reports it to
:func:`sys.unraisablehook` as "Exception ignored" with a traceback, and the program carries on
as if no signal had arrived (it may even write its output).

:func:`install_unraisable_hook` replaces that report for interrupts: the interrupt is kept
(:func:`defer`) and delivered again a millisecond later through :func:`_thread.interrupt_main`
from a timer thread, so it is raised at a bytecode after the callback, normally outside it (if that
is inside a callback again, the cycle repeats until the C code returns). The atomic writers of :mod:`microneedling.io` call
:func:`raise_pending` before they move a result into place, so a run whose interrupt was swallowed
never publishes its output. Any other unraisable exception goes to the hook that was there before,
except once an interrupt has arrived (:func:`mark_interrupted`, called by the signal handlers, or a
swallowed interrupt): the program is then unwinding, and an error in a finalizer of foreign code
torn mid-call (seen: llvmlite's ``ObjectRef.__del__`` after SIGTERM during numba's compiler) is a
consequence of the interrupt, not news; printing its traceback would only hide the one-line
"terminated" the user should see.

Inside numba's compiler an interrupt is not raised at all until the compiler has returned
(:func:`hold`, which the signal handlers ask first). numba and llvmlite move LLVM objects between
owners in Python code between two C calls (llvmlite's ``link_modules``: LLVM has destroyed the
linked module, the next line marks its Python object detached; ``ExecutionEngine.add_module``:
the engine owns the module, the next line says so). An exception raised in between leaves an
object whose finalizer frees that LLVM memory a second time when the exception's traceback is
dropped: SIGSEGV or glibc's "double free" abort (an interrupt raised elsewhere in the compiler
also leaves numba itself broken for the rest of the process: "generator raised StopIteration").
Seen: ``test_kill[validate-SIGTERM]`` in a fresh-clone CI run exited -11 with an empty stderr
(no stack recorded). The likely path: validate imports scoringrules, whose functions numba
compiles at import (cached or not), 2-5 s after the start; typer turns the interrupt into its
``Exit(130)`` and drops it before :func:`microneedling.cli.app.main` prints a word. A SIGTERM
sent to validate at that line of ``link_modules`` gives exactly that, every time; random-time
signals during compilation crash a process within seconds. numba takes its global compiler lock to compile, to load a function
from its cache and to set up its code generator; a signal that arrives while the main thread
holds it is kept, and a listener of numba's ``numba:compiler_lock`` events delivers it again
(:func:`_thread.interrupt_main`) as soon as the main thread has let the lock go, between two
compilations. A second signal while one is held is raised at once (the user insists; the old
risk, taken knowingly).
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "behind",
    "clear",
    "defer",
    "hold",
    "in_numba_compiler",
    "install_unraisable_hook",
    "mark_interrupted",
    "pending",
    "raise_pending",
]

#: seconds between swallowing an interrupt and raising it again [s]
_REDELIVERY_DELAY_S = 0.001

#: the interrupt that a callback swallowed and that has not been raised again since
_PENDING: list[BaseException] = []

#: an interrupt arrived in this process (the program is unwinding)
_INTERRUPTED: list[bool] = []

#: set while the main thread runs the hook: a redelivery waits until it is clear
_IN_HOOK = threading.Event()

#: times the hook keeps an interrupt that arrives while it runs, before it gives up
_HOOK_RETRIES = 5

#: the signal that arrived while numba's compiler ran in the main thread, delivered again when
#: the compiler returns (:func:`hold`)
_HELD: list[int] = []

#: the listener of numba's compiler-lock events, once registered (:func:`_listen_to_compiler`)
_LISTENER: list[Any] = []


def mark_interrupted() -> None:
    """Record that an interrupt arrived (signal handlers call this before they raise)."""
    _INTERRUPTED[:] = [True]


def defer(exc: BaseException) -> None:
    """Keep ``exc`` (an interrupt swallowed by foreign code) until :func:`raise_pending`."""
    _PENDING[:] = [exc]
    mark_interrupted()


def pending() -> BaseException | None:
    """The interrupt waiting to be raised, if any."""
    return _PENDING[0] if _PENDING else None


def clear() -> None:
    """Forget the pending interrupt (a signal handler raising afresh calls this)."""
    _PENDING.clear()


def behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The interrupt (Ctrl-C's ``KeyboardInterrupt``, SIGTERM's ``Terminated``) that ``exc`` was
    raised from or while handling, if any. Foreign code may turn an interrupt into an error of its
    own: pybind11 reports any exception in a module's initialisation as ``ImportError:
    initialization failed`` raised from it, and Python 3.11 one in ``__set_name__`` as
    ``RuntimeError: Error calling __set_name__`` (both seen: SIGTERM while ``validate`` imported
    its libraries, 1-3 s after the start, exited 3, "internal error", instead of 143)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def raise_pending() -> None:
    """Raise the pending interrupt, if any (a checkpoint before a result is published)."""
    if _PENDING:
        exc = _PENDING.pop()
        raise exc


def in_numba_compiler() -> bool:
    """Whether this thread is inside numba's compiler: it holds numba's global compiler lock,
    which numba takes to compile, to load a function from its cache and to set up its code
    generator. False when numba has not been imported (it is not imported here for this)."""
    module = sys.modules.get("numba.core.compiler_lock")
    is_locked = getattr(getattr(module, "global_compiler_lock", None), "is_locked", None)
    return bool(is_locked()) if callable(is_locked) else False


class _CompilerExit:
    """Delivers the held signal again once the main thread has let numba's compiler lock go.

    A listener of numba's ``numba:compiler_lock`` events (registered as a virtual subclass of
    ``numba.core.event.Listener``: numba is not imported by this module). The lock is re-entrant;
    only the end of the outermost hold leaves :func:`in_numba_compiler` false. The signal
    handler runs at the next bytecode of the main thread, after the lock was released."""

    def notify(self, event: Any) -> None:
        if event.is_end:
            self.on_end(event)

    def on_start(self, event: Any) -> None:
        pass

    def on_end(self, event: Any) -> None:
        if _HELD and threading.current_thread() is threading.main_thread():
            if not in_numba_compiler():
                _thread.interrupt_main(signal.Signals(_HELD.pop()))


def _listen_to_compiler() -> bool:
    """Register :class:`_CompilerExit` with numba's events (once); False if numba has no such
    events (then a signal is not held: it is raised as it was before)."""
    if _LISTENER:
        return True
    events = sys.modules.get("numba.core.event")
    base = getattr(events, "Listener", None)
    register = getattr(events, "register", None)
    if base is None or not callable(register) or not hasattr(base, "register"):
        return False
    base.register(_CompilerExit)
    listener = _CompilerExit()
    register("numba:compiler_lock", listener)
    _LISTENER.append(listener)
    return True


def hold(signum: int) -> bool:
    """Whether a signal handler should return without raising: the main thread is inside
    numba's compiler (see the module doc). The signal is then delivered again as soon as the
    compiler has returned, and the handler, asked again, raises. A second signal while one is
    held is not held (False: raise now)."""
    if _HELD:
        _HELD.clear()
        return False
    if not in_numba_compiler() or not _listen_to_compiler():
        return False
    _HELD.append(int(signum))
    return True


def _redeliver(signum: int) -> None:
    """Trip ``signum`` again from another thread, so its handler runs at a bytecode of the main
    thread after this hook has returned (tripped from here, it would run inside the hook)."""

    def trip() -> None:
        # a handler run while the main thread is still inside the hook would raise there and be
        # reported as "Exception ignored in sys.unraisablehook" (seen on a loaded machine: the
        # timer fired before ``timer.start()`` returned): wait until the hook has finished
        while _IN_HOOK.is_set():
            time.sleep(_REDELIVERY_DELAY_S)
        time.sleep(_REDELIVERY_DELAY_S)  # and for its last bytecodes
        if pending() is not None:
            _thread.interrupt_main(signal.Signals(signum))

    timer = threading.Timer(_REDELIVERY_DELAY_S, trip)
    timer.daemon = True
    timer.start()


def install_unraisable_hook(
    rearm: Callable[[BaseException], int | None] | None = None,
) -> None:
    """Keep and redeliver interrupts that reach :func:`sys.unraisablehook` (see the module doc).

    ``rearm(exc)`` restores the handler of the signal that raised ``exc`` (a handler that resets
    itself to the default action after one signal, as the CLI's does, must be put back before the
    signal is delivered again) and returns that signal's number; ``None`` means SIGINT, whose
    default Python handler raises ``KeyboardInterrupt``. Calling this twice installs one hook.
    """
    previous = sys.unraisablehook
    if getattr(previous, "_microneedling", False):
        previous = previous._previous  # type: ignore[attr-defined]

    def keep(exc: BaseException) -> None:
        # an interrupt that arrives while this runs (the redelivered one, if the machine is slow
        # enough) is kept again instead of escaping from the hook
        for _ in range(_HOOK_RETRIES):
            try:
                defer(exc)
                signum = rearm(exc) if rearm is not None else None
                _redeliver(signal.SIGINT if signum is None else signum)
                return
            except KeyboardInterrupt as again:
                exc = again

    def hook(unraisable: Any) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, KeyboardInterrupt):
            _IN_HOOK.set()
            try:
                keep(exc)
            finally:
                _IN_HOOK.clear()
            return
        if _INTERRUPTED:
            return  # a finalizer's error while the program unwinds an interrupt
        previous(unraisable)

    hook._microneedling = True  # type: ignore[attr-defined]
    hook._previous = previous  # type: ignore[attr-defined]
    sys.unraisablehook = hook
