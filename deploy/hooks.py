"""Which hooks run for a new release, and why: a hook whose inputs did not change is skipped."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from deploy.config import Hook


@dataclass(frozen=True)
class Decision:
    hook: Hook
    run: bool
    reason: str


def decide(hooks: tuple[Hook, ...], changed: tuple[str, ...] | None) -> list[Decision]:
    """`changed` is None when there is no live release to compare with (everything runs).

    A hook runs when one of ITS inputs changed: a requirements change re-runs only the hooks that name
    the requirements file in `when_changed` (a dependency bump must not re-run, say, a data reset).
    """
    out = []
    for h in hooks:
        if not h.when_changed:
            out.append(Decision(h, True, "always"))
        elif changed is None:
            out.append(Decision(h, True, "no live release to compare with"))
        else:
            hit = next((p for p in changed if any(fnmatch.fnmatch(p, g) for g in h.when_changed)), None)
            out.append(Decision(h, hit is not None, f"{hit} changed" if hit else "no matching file changed"))
    return out
