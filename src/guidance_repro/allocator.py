"""glibc malloc settings for the CLI's batch jobs.

PyTorch's CPU allocator takes every tensor buffer from the C library's ``malloc``. With glibc's
defaults, a freed buffer of more than a few MB goes back to the kernel (``munmap`` or a heap trim)
and the next step's buffer of the same size is page-faulted and zero-filled again: on the 2-core
machines of the default tier this showed up as 20-40 % system CPU time in the conv-net jobs (a
tokenizer training 177 s -> 149 s beside another job, a diffusion sampling job 44 s -> 24 s with
the settings below; ``benchmarks/allocator.py`` measures it). Keeping freed memory in the process
(up to 1 GiB of heap top kept, a large top pad, the largest mmap threshold glibc accepts) removes those faults; resident memory
stays at the job's peak, which is what a short batch job wants.

There is no library for this; it is three ``mallopt`` calls through ctypes. They are skipped
where the C library is not glibc, where the user set any ``MALLOC_*`` variable (theirs win), and
where ``GUIDANCE_REPRO_MALLOC=default`` asks for glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MB = 1 << 20
SETTINGS = (
    (M_MMAP_THRESHOLD, 32 * MB),  # glibc's maximum on 64-bit (HEAP_MAX_SIZE / 2)
    (M_TRIM_THRESHOLD, 1024 * MB),  # keep up to 1 GiB of freed heap top (mallopt takes a C int)
    (M_TOP_PAD, 256 * MB),  # grow the heap in large steps (address space only)
)
OPT_OUT = "GUIDANCE_REPRO_MALLOC"


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def tune_malloc(environ=None, libc=None) -> bool:
    """Apply SETTINGS through mallopt; True if all were accepted. ``libc`` is for tests."""
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT, "").lower() == "default" or any(k.startswith("MALLOC_") for k in env):
        return False
    libc = _glibc() if libc is None else libc
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    # mallopt returns 1 on success and 0 for a value glibc refuses.
    return all(libc.mallopt(ctypes.c_int(p), ctypes.c_int(v)) == 1 for p, v in SETTINGS)
