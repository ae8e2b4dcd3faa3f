"""Preemption: a signal asks the run to stop at the next optimizer step with a complete checkpoint.

On a cluster, the scheduler announces the end of a job with a signal: SLURM sends SIGTERM when it
preempts or cancels a job (and SIGKILL `KillWait` seconds later, 30 s by default), and can send
SIGUSR1 a chosen time ahead of the time limit (`#SBATCH --signal=B:USR1@600`). With
`--preemption_signals SIGTERM,SIGUSR1` (the default) such a signal does not kill the training
process. It is noted, the current optimizer step finishes, and the step guard (one collective per
step) makes every rank agree to stop after that same step, even when the signal reached only one
of them. Then all ranks write one complete checkpoint, and the process exits with status 75
(`PREEMPTED_EXIT_CODE`, EX_TEMPFAIL in sysexits.h: "try again later"). Rerunning the same command
resumes from that checkpoint.

More signals while the checkpoint is written are noted and ignored, so a launcher or scheduler
that repeats SIGTERM cannot interrupt the save. SIGINT (Ctrl-C) and SIGKILL still stop the process
at once; a checkpoint cut short that way has no completion marker, and resume takes the previous one.
"""

from __future__ import annotations

import logging
import signal
import threading

from llava.train.preflight import LaunchError

logger = logging.getLogger(__name__)

PREEMPTED_EXIT_CODE = 75
_UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}


class TrainingPreempted(Exception):
    """The run stopped early on a preemption signal, after writing `checkpoint`."""

    def __init__(self, signal_name: str, step: int, checkpoint: str):
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        super().__init__(
            f"{signal_name} received: stopped after step {step} with a complete checkpoint, {checkpoint}; "
            f"run the same command again to resume from it (exit status {PREEMPTED_EXIT_CODE} means: preempted, requeue)"
        )


def parse_signals(spec: str) -> list[signal.Signals]:
    """`SIGTERM,SIGUSR1` (names, with or without SIG, or numbers) -> signals; `none` or '' -> []."""
    found: list[signal.Signals] = []
    for token in (t.strip() for t in spec.split(",")):
        if not token or token.lower() == "none":
            continue
        name = token.upper() if token.upper().startswith("SIG") else f"SIG{token.upper()}"
        try:
            sig = signal.Signals(int(token)) if token.isdigit() else signal.Signals[name]
        except (KeyError, ValueError):
            raise LaunchError(
                f"--preemption_signals {spec}: unknown signal {token!r}; use names such as SIGTERM,SIGUSR1, or none"
            ) from None
        if sig in _UNCATCHABLE:
            raise LaunchError(f"--preemption_signals {spec}: {sig.name} cannot be caught; use SIGTERM or SIGUSR1")
        if sig not in found:
            found.append(sig)
    return found


class PreemptionListener:
    """Notes the first of `signals` that arrives while it is installed (`with listener:`).

    The handlers only set a flag (signal handlers run between bytecodes of the main thread, so the
    training step in progress is never cut short); the trainer polls `received` once per step.
    """

    def __init__(self, signals: list[signal.Signals]):
        self.signals = signals
        self.received: str | None = None
        self._previous: dict[signal.Signals, object] = {}

    def _note(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = name
            logger.warning(
                "%s received: finishing the current optimizer step, then writing a checkpoint and exiting with "
                "status %d", name, PREEMPTED_EXIT_CODE,
            )
        else:
            logger.warning("%s received again: already stopping; the checkpoint is finished first", name)

    def __enter__(self) -> PreemptionListener:
        if self.signals and threading.current_thread() is not threading.main_thread():
            logger.warning("training runs outside the main thread: --preemption_signals cannot be installed")
            return self
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
