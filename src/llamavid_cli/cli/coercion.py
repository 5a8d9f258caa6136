"""Typer's parameter coercion, deferred until a parameter has a value to coerce.

typer >= 0.24 coerces each parameter's value with a pydantic TypeAdapter, built the first time
the parameter is processed, even when its value is missing (None), which typer then passes
through without asking the adapter. `--help` and the completion options are missing in nearly
every run, so every command, even `cache list`, paid pydantic's imports (~120 ms, more than
typer and rich together). `defer()` makes typer build each adapter when a value first needs
it: a missing value takes typer's own path for missing values (`RuntimeParam.coerce`), a
present one is coerced by the adapter typer builds, so values, defaults and error messages are
typer's. Older typer (no pydantic) and a typer whose internals moved are left as they are.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any


def defer() -> bool:
    """Patch typer (>= 0.24) to build coercion adapters on demand; False when there is nothing to patch."""
    try:
        from typer import _coercion, core
    except ImportError:  # typer < 0.24 coerces through click, without pydantic
        return False
    build = getattr(core, "build_runtime_param", None)
    base = getattr(_coercion, "RuntimeParam", None)
    if build is None or base is None or getattr(build, "deferred", False):
        return False

    @dataclasses.dataclass(frozen=True)
    class Deferred(base):  # type: ignore[misc, valid-type]
        """Coerces like `build(descriptor)`; `base.coerce` answers missing values without it."""

        descriptor: Any = None

        @functools.cached_property
        def built(self) -> Any:
            return build(self.descriptor)

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            return self.built._coerce_value(value, param=param, ctx=ctx)

    def build_deferred(descriptor: Any) -> Any:
        return Deferred(
            parameter_info=descriptor.parameter_info, annotation=descriptor.annotation, descriptor=descriptor
        )

    build_deferred.deferred = True  # type: ignore[attr-defined]
    core.build_runtime_param = build_deferred
    return True
