"""What a deploy would do on a host, from one read-only look at it: `fab plan`, `fab deploy --dry-run`.

The plan compares the release about to be made with the live one: revision and commits between
them, files added/changed/removed, whether the requirements (hence the venv) change, which hooks
would run and why, unified diffs of the rendered vhost and WSGI script against what the host has,
and how the app would be reloaded. Values of `environment:` never appear: they are masked on both
sides of the WSGI script's diff (a changed value is only said to have changed).
"""

from __future__ import annotations

import difflib
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fabric import Connection

from deploy import dependencies, hooks, host, releases, render, source, venv
from deploy.config import Settings
from deploy.connect import open_connection

# `os.environ["KEY"] = value` lines of the WSGI script, but the two that hold no secret.
_ENV_LINE = re.compile(r"""^(os\.environ\[(['"])(?!DJANGO_SETTINGS_MODULE\2|DEPLOY_RELEASE\2)[^'"]+\2\] = ).*$""", re.M)


def mask(script: str) -> str:
    return _ENV_LINE.sub(r"\1<hidden>", script)


def diff(old: str | None, new: str, name: str) -> str:
    """A unified diff of what the host has (`old`, None = nothing) and what a deploy would install."""
    before = (old or "").splitlines(keepends=True)
    return "".join(difflib.unified_diff(before, new.splitlines(keepends=True), f"host/{name}", f"new/{name}"))


def commits(project_dir: Path, live: str | None, new: str) -> list[str]:
    """'+ sha subject' for commits going out, '- sha subject' for commits a deploy would take back."""
    if not live or live.startswith("tree-") or new.startswith("tree-") or live == new:
        return []

    def log(spec: str) -> list[str]:
        try:
            out = subprocess.run(
                ["git", "-C", str(project_dir), "log", "--format=%h %s", "--max-count=50", spec],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        except (OSError, subprocess.CalledProcessError):
            return []
        return out.splitlines()

    known = subprocess.run(["git", "-C", str(project_dir), "cat-file", "-e", f"{live}^{{commit}}"], capture_output=True)
    if known.returncode != 0:
        return [f"? live revision {live[:12]} is not in the local repository (git fetch?)"]
    return [f"+ {line}" for line in log(f"{live}..{new}")] + [f"- {line}" for line in log(f"{new}..{live}")]


def make(s: Settings, src: source.Source, survey: host.Survey, project_dir: Path) -> dict[str, Any]:
    """The plan of one host as plain data (the JSON document's `plan`)."""
    listing = survey.facts.listing
    live = listing.current
    live_rel = listing.get(live) if live else None
    base = source.parse_manifest(survey.facts.manifest) if live else {}
    paths = {f.path: f.digest for f in src.files}
    added = sorted(p for p in paths if p not in base)
    changed = sorted(p for p in paths if p in base and base[p] != paths[p])
    removed = sorted(p for p in base if p not in paths)
    # What a deploy's delta would call changed (source.Delta.changed): sent paths, then removed ones.
    differ = tuple(sorted(added + changed)) + tuple(removed)
    decisions = hooks.decide(s.hooks, differ if base else None)
    deps = dependencies.find(s.dependencies, s.requirements, src)
    key = venv.key(deps.keyed, survey.facts.python, s.pip_args)
    if key == survey.live_venv:
        venv_note = f"reuse {key} (the live release's)"
    elif key in survey.facts.venvs:
        venv_note = f"reuse {key} (built earlier, still on the host)"
    else:
        venv_note = f"build {key}"
    # The requirements files themselves (included ones too; the lock and pyproject.toml), against the live
    # release's manifest.
    digests = {f.path: f.digest for f in src.files}
    requirements_changed = any(digests.get(p) != base.get(p) for p, _ in deps.inputs) if live else True
    if venv_note.startswith("build") and live and not requirements_changed:
        venv_note += " (the host's Python or pip_args changed)"
    release_id = releases.new_id(src.short_revision)
    rendered = render.render(s, release_id, src.revision, project_dir)
    diffs = {}
    vhost_diff = diff(survey.vhost, rendered["vhost.conf"], "vhost.conf")
    if vhost_diff:
        diffs["vhost.conf"] = vhost_diff
    # The release id and revision are in every script: only other changes are news.
    old_script = _generic(mask(survey.wsgi), live, live_rel.revision if live_rel else None) if survey.wsgi is not None else None
    wsgi_diff = diff(old_script, _generic(mask(rendered["app.wsgi"]), release_id, src.revision), "app.wsgi")
    if wsgi_diff:
        diffs["app.wsgi"] = wsgi_diff
    if survey.wsgi is not None and _env_lines(survey.wsgi) != _env_lines(rendered["app.wsgi"]):
        diffs["environment"] = "environment values changed (not shown)"
    reload = s.reload_strategy
    if reload == "slots" and survey.live_slot:
        slot, _, spare = (survey.next_slot or ("b" if survey.live_slot == "a" else "a")).partition(" ")
        how = " (the spare: no restart)" if spare else ""
        reload = f"slots: load slot {slot}{how}, check it on the preview route, flip from slot {survey.live_slot}"
    if not live or "vhost.conf" in diffs:
        both = ", every slot restarts" if s.slotted else ""
        reload = f"graceful (Apache re-reads its config: {'new vhost' if live else 'first release'}{both})"
    return {
        "set_up": survey.set_up,
        "live_release": live,
        "live_revision": live_rel.revision if live_rel else None,
        "release": release_id,
        "revision": src.revision,
        "commits": commits(project_dir / s.path, live_rel.revision if live_rel else None, src.revision)
        if s.source == "git"
        else [],
        "files": {"added": added, "changed": changed, "removed": removed, "unchanged": len(paths) - len(added) - len(changed)},
        "requirements_changed": requirements_changed,
        "dependencies": deps.describe,
        "venv": venv_note,
        "shared_tracked": shared_tracked(s, paths),
        "hooks": [{"name": x.hook.name, "run": x.run, "reason": x.reason} for x in decisions],
        "diffs": diffs,
        "reload": reload,
        "health": f"GET {s.status_path} must name the new release" + (f", then GET {s.health.path}" if s.health.path else "")
        if s.health.enabled
        else "off",
        "locked": survey.lock,
    }


def shared_tracked(s: Settings, paths: Mapping[str, str]) -> dict[str, list[str]]:
    """Tracked files at or under a shared path: they seed shared/ on the first deploy, then shared/ wins."""
    out: dict[str, list[str]] = {}
    for shared in (*s.shared_dirs, *s.shared_files):
        inside = sorted(p for p in paths if p == shared or p.startswith(shared.rstrip("/") + "/"))
        if inside:
            out[shared] = inside
    return out


def _generic(script: str, release_id: str | None, revision: str | None) -> str:
    for value, name in ((release_id, "<release>"), (revision, "<revision>")):
        if value and value != "-":
            script = script.replace(value, name)
    return script


def _env_lines(script: str) -> list[str]:
    return [m.group(0) for m in _ENV_LINE.finditer(script)]


def plan(c: Connection, s: Settings, src: source.Source, project_dir: Path) -> dict[str, Any]:
    """One host's plan: one SSH command (plus the connection), nothing changed on the host."""
    open_connection(c)
    return make(s, src, host.survey(c, s), project_dir)


__all__ = ["diff", "make", "mask", "plan"]
