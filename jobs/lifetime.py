"""Processes that must not outlive the one that started them."""

import ctypes
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals) -> None:
    """Linux: send `sig` to this process when the thread that started it dies, even by SIGKILL.

    Passed as `preexec_fn`, so it runs in the child between fork and exec.
    """
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
