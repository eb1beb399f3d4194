"""An interrupt raised inside a callback from C code is not lost (microneedling.interrupts).

The signal arrives while a ctypes callback runs Python (as numba's compiler does through
llvmlite): the exception cannot cross the C frames, and without the hook the command would print
"Exception ignored ... Traceback" and finish its work as if nothing had happened.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
