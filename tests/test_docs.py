"""The README's config reference names every setting the config accepts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from deploy.config import Apache, Daemon, Health, Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_config_reference() -> None:
    keys = [f.name for f in dataclasses.fields(Settings) if f.name not in ("stage", "daemon", "apache", "health")]
    keys += ["stages", "default_stage"]
    for cls, prefix in ((Daemon, "daemon"), (Apache, "apache"), (Health, "health")):
        keys += [f"{prefix}.{f.name}" for f in dataclasses.fields(cls)]
    missing = [k for k in keys if f"| `{k}` |" not in README]
    assert not missing, f"README config reference lacks: {missing}"
