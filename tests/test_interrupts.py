"""An interrupt raised inside a callback from C code is not lost (microneedling.interrupts).

The signal arrives while a ctypes callback runs Python (as numba's compiler does through
llvmlite): the exception cannot cross the C frames, and without the hook the command would print
"Exception ignored ... Traceback" and finish its work as if nothing had happened.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from numba.core.compiler_lock import global_compiler_lock

from microneedling import interrupts

SCRIPT = textwrap.dedent(
    """
    import ctypes, os, signal, sys, time
    import typer
    from pathlib import Path
    from microneedling.cli.common import install_signal_handlers, user_errors
    from microneedling.io import atomic_directory

    install_signal_handlers()
    out = Path(sys.argv[1])
    SIG = getattr(signal, sys.argv[2])

    def callback():
        os.kill(os.getpid(), SIG)
        for _ in range(1000):  # the handler runs here, inside the callback
            pass

    CALLBACK = ctypes.CFUNCTYPE(None)(callback)

    try:
        with user_errors():
            with atomic_directory(out, kind="test") as tmp:
                (tmp / "half.txt").write_text("half")
                CALLBACK()  # C calls Python; the interrupt is raised and swallowed inside
                (tmp / "rest.txt").write_text("rest")
                for _ in range(100):
                    time.sleep(0.01)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    print("finished")
    """
)


@pytest.mark.parametrize(
    ("sig", "code", "word"), [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "interrupted")]
)
def test_an_interrupt_inside_a_c_callback_stops_the_command(
    tmp_path: Path, sig: str, code: int, word: str
) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out), sig],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Exception ignored" not in proc.stderr
    assert f"error: {word}; no output was written" in proc.stderr
    assert "finished" not in proc.stdout
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary left either


SLOW_MACHINE = textwrap.dedent(
    """
    import threading, time
    _start = threading.Timer.start

    def slow_start(self):  # the main thread is descheduled right after starting the timer
        _start(self)
        time.sleep(0.2)

    threading.Timer.start = slow_start
    """
)


def test_an_interrupt_redelivered_while_the_hook_still_runs_is_not_lost(tmp_path: Path) -> None:
    # on a loaded machine the redelivery timer fired before the hook had returned; the handler
    # then raised inside the hook ("Exception ignored in sys.unraisablehook", seen in CI)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", SLOW_MACHINE + SCRIPT, str(out), "SIGTERM"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 143, proc.stderr
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr
    assert "error: terminated; no output was written" in proc.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_pending_interrupt_is_raised_once_at_the_checkpoint() -> None:
    assert interrupts.pending() is None
    exc = KeyboardInterrupt()
    interrupts.defer(exc)
    assert interrupts.pending() is exc
    with pytest.raises(KeyboardInterrupt):
        interrupts.raise_pending()
    assert interrupts.pending() is None
    interrupts.raise_pending()  # nothing pending: no-op


def test_the_commit_of_an_atomic_writer_raises_a_pending_interrupt(tmp_path: Path) -> None:
    from microneedling.io import atomic_directory, write_text_atomic

    interrupts.defer(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt), atomic_directory(tmp_path / "d", kind="test") as tmp:
        (tmp / "a.txt").write_text("a")
    assert list(tmp_path.iterdir()) == []
    interrupts.defer(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        write_text_atomic("x", tmp_path / "f.txt")
    assert list(tmp_path.iterdir()) == []
    interrupts.clear()


def test_other_unraisable_exceptions_reach_the_previous_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(interrupts, "_INTERRUPTED", [])  # earlier tests deferred an interrupt
    seen: list[BaseException] = []
    saved = sys.unraisablehook
    try:
        sys.unraisablehook = lambda u: seen.append(u.exc_value)
        interrupts.install_unraisable_hook()
        interrupts.install_unraisable_hook()  # idempotent: one hook, the same previous one
        err = ValueError("x")

        class Unraisable:
            exc_type, exc_value, exc_traceback, err_msg, object = (
                ValueError,
                err,
                None,
                None,
                None,
            )

        sys.unraisablehook(Unraisable())
        assert seen == [err]
    finally:
        sys.unraisablehook = saved


FINALIZER = textwrap.dedent(
    """
    import os, signal, sys, time
    import typer
    from microneedling.cli.common import install_signal_handlers, user_errors

    install_signal_handlers()

    class Torn:
        def __del__(self):  # a foreign object whose finalizer fails once its call was torn
            raise RuntimeError("torn mid-call")

    try:
        with user_errors():
            if sys.argv[1] == "interrupted":
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):
                    pass
            Torn()  # finalised at once: 'Exception ignored' unless an interrupt arrived
            time.sleep(0.2)
    except typer.Exit as exc:
        Torn()  # the unwinding of the interrupt finalises such objects too
        sys.exit(exc.exit_code)
    print("finished")
    """
)


@pytest.mark.parametrize("when", ["interrupted", "normal"])
def test_a_finalizer_error_is_silent_only_while_an_interrupt_unwinds(when: str) -> None:
    """After SIGTERM a finalizer's error (seen: llvmlite's ObjectRef.__del__ during numba's
    compiler) prints no traceback above the one-line 'terminated'; without an interrupt it is
    reported as Python always does."""
    res = subprocess.run(
        [sys.executable, "-c", FINALIZER, when], capture_output=True, text=True, timeout=60
    )
    if when == "interrupted":
        assert res.returncode == 143, res.stderr
        assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr
        assert "error: terminated" in res.stderr
    else:
        assert res.returncode == 0 and "finished" in res.stdout
        assert "Exception ignored" in res.stderr and "torn mid-call" in res.stderr


COMPILER_LOCK = textwrap.dedent(
    """
    import os, signal, sys
    import typer
    from numba.core.compiler_lock import global_compiler_lock
    from microneedling.cli.common import install_signal_handlers, user_errors

    install_signal_handlers()
    SIG = getattr(signal, sys.argv[1])
    TIMES = int(sys.argv[2])

    def arrive():
        os.kill(os.getpid(), SIG)
        for _ in range(1000):  # the handler runs here
            pass

    try:
        with user_errors():
            with global_compiler_lock:  # as numba's compiler holds it, re-entered as it does
                with global_compiler_lock:
                    for _ in range(TIMES):
                        arrive()
                    print("inner block done")
                for _ in range(1000):
                    pass
                print("compiler returned")
            for _ in range(1000):  # the held signal is raised here
                pass
            print("not interrupted")
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    """
)


@pytest.mark.parametrize(
    ("sig", "code", "word"), [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "interrupted")]
)
def test_an_interrupt_inside_numbas_compiler_is_raised_when_the_compiler_returns(
    sig: str, code: int, word: str
) -> None:
    """While the main thread holds numba's compiler lock (compiling, loading from the cache), an
    interrupt is held back and raised as soon as the outermost hold ends: raised inside, it can
    leave LLVM objects that are freed twice (SIGSEGV; see the next test)."""
    res = subprocess.run(
        [sys.executable, "-c", COMPILER_LOCK, sig, "1"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == code, res.stderr
    assert res.stdout.split() == ["inner", "block", "done", "compiler", "returned"], res.stdout
    assert f"error: {word}" in res.stderr
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr


def test_a_second_signal_inside_numbas_compiler_is_raised_at_once() -> None:
    res = subprocess.run(
        [sys.executable, "-c", COMPILER_LOCK, "SIGTERM", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 143, res.stderr
    assert res.stdout == "", res.stdout  # the user insisted: raised inside the compiler
    assert "error: terminated" in res.stderr and "Traceback" not in res.stderr


LINK = textwrap.dedent(
    """
    import os, signal, sys
    import llvmlite.binding.linker as linker
    import numba
    import typer
    from microneedling.cli.common import install_signal_handlers, user_errors

    install_signal_handlers()
    LINE = next(
        i + 1 for i, text in enumerate(open(linker.__file__).read().splitlines())
        if "src.detach()" in text
    )

    def at_line(frame, event, arg):
        if event == "line" and frame.f_lineno == LINE and not sent:
            sent.append(True)
            print("signal sent", flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
        return at_line

    def tracer(frame, event, arg):
        return at_line if frame.f_code is linker.link_modules.__code__ else None

    @numba.njit  # no cache: compiled in this process
    def f(x):
        return 2.0 * x + 1.0

    sent = []
    try:
        with user_errors():
            sys.settrace(tracer)
            try:
                f(1.0)
            finally:
                sys.settrace(None)
                print(f"compiled {len(f.signatures)}", flush=True)
            print("not interrupted")
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    """
)


def test_a_sigterm_between_llvmlites_link_and_detach_does_not_crash() -> None:
    """The crash itself: SIGTERM right after LLVM linked a module into another (destroying it)
    and before llvmlite marked its Python object detached. Raised there, the object's finalizer
    disposes of the destroyed module again and the process dies of SIGSEGV (every time, before
    the interrupt was held back); held back, the compilation ends and the command exits 143."""
    res = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", LINK],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "signal sent" in res.stdout, (  # else llvmlite changed: find the window again
        f"llvmlite's link_modules has no 'src.detach()' line that ran: {res.stdout} {res.stderr}"
    )
    assert res.returncode == 143, f"exit {res.returncode}\n{res.stderr}"
    assert "Fatal Python error" not in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert "compiled 1" in res.stdout and "not interrupted" not in res.stdout, res.stdout
    assert "error: terminated" in res.stderr


def test_in_numba_compiler_is_whether_this_thread_holds_its_lock() -> None:
    assert not interrupts.in_numba_compiler()
    with global_compiler_lock:
        assert interrupts.in_numba_compiler()
        seen: list[bool] = []
        other = threading.Thread(target=lambda: seen.append(interrupts.in_numba_compiler()))
        other.start()
        other.join()
        assert seen == [False]  # another thread's compilation is not this thread's
    assert not interrupts.in_numba_compiler()


FOREIGN_ERROR = textwrap.dedent(
    """
    import os, signal, sys
    from microneedling.cli import app as cli
    from microneedling.cli.common import Terminated

    @cli.app.command("import-while-terminated")
    def _import() -> None:
        try:  # SIGTERM while an extension module initialises ...
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
        except Terminated as exc:  # ... which pybind11 reports as its own error
            raise ImportError("initialization failed") from exc

    sys.argv = ["microneedling", "import-while-terminated"]
    cli.main()
    """
)


def test_an_interrupt_that_foreign_code_turned_into_an_error_exits_as_the_interrupt() -> None:
    """Seen killing validate at random times: SIGTERM while a pybind11 extension was imported
    became ``ImportError: initialization failed`` (and once, in a class body, ``RuntimeError:
    Error calling __set_name__``) and the command exited 3 ("internal error, this is a bug")
    instead of 143."""
    res = subprocess.run(
        [sys.executable, "-c", FOREIGN_ERROR], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 143, res.stderr
    assert res.stderr.strip() == "error: terminated", res.stderr


def test_behind_finds_the_interrupt_an_error_came_from() -> None:
    interrupt = KeyboardInterrupt()
    assert interrupts.behind(interrupt) is interrupt
    try:
        try:
            raise interrupt
        except KeyboardInterrupt as exc:
            raise ImportError("initialization failed") from exc
    except ImportError as caused:
        assert interrupts.behind(caused) is interrupt
    try:
        try:
            raise interrupt
        except KeyboardInterrupt:
            raise RuntimeError("while unwinding") from None  # context kept, cause suppressed
    except RuntimeError as during:
        assert interrupts.behind(during) is interrupt
    plain = ValueError("no interrupt")
    plain.__context__ = RuntimeError("nor here")
    assert interrupts.behind(plain) is None
    loop_a, loop_b = ValueError("a"), ValueError("b")
    loop_a.__context__, loop_b.__context__ = loop_b, loop_a
    assert interrupts.behind(loop_a) is None
