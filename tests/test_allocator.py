"""The CLI's glibc malloc settings (guidance_repro.allocator): what is applied, when it is not."""

from __future__ import annotations

import platform

from guidance_repro import allocator


class FakeLibc:
    def __init__(self, accept=True):
        self.calls, self.accept = [], accept

    def mallopt(self, param, value):
        self.calls.append((param.value, value.value))
        return 1 if self.accept else 0


def test_applies_the_three_settings_in_order():
    libc = FakeLibc()
    assert allocator.tune_malloc(environ={}, libc=libc) is True
    assert libc.calls == [(-3, 32 << 20), (-1, 1024 << 20), (-2, 256 << 20)]


def test_user_malloc_variables_and_the_opt_out_win():
    for env in ({"MALLOC_ARENA_MAX": "2"}, {"MALLOC_TRIM_THRESHOLD_": "0"},
                {"GUIDANCE_REPRO_MALLOC": "default"}, {"GUIDANCE_REPRO_MALLOC": "DEFAULT"}):
        libc = FakeLibc()
        assert allocator.tune_malloc(environ=env, libc=libc) is False
        assert libc.calls == []


def test_a_refused_value_is_reported():
    assert allocator.tune_malloc(environ={}, libc=FakeLibc(accept=False)) is False


def test_the_real_c_library_accepts_the_values_where_it_is_glibc():
    # glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit): the settings
    # must stay within what it accepts, or the CLI would silently run with the defaults.
    is_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert allocator.tune_malloc(environ={}) is is_glibc
