from __future__ import annotations

from deploy.config import Hook
from deploy.hooks import decide

MIGRATE = Hook("migrate", "python manage.py migrate", when_changed=("*/migrations/*",))
ALWAYS = Hook("check", "python manage.py check")
STATIC = Hook("collectstatic", "python manage.py collectstatic", when_changed=("*/static/*", "requirements.txt"))


def runs(changed: tuple[str, ...] | None) -> dict[str, bool]:
    return {d.hook.name: d.run for d in decide((MIGRATE, ALWAYS, STATIC), changed)}


def test_skipped_when_no_input_changed() -> None:
    assert runs(("movies/views.py",)) == {"migrate": False, "check": True, "collectstatic": False}


def test_runs_when_input_changed_or_no_live_release() -> None:
    assert runs(("movies/migrations/0003_x.py",))["migrate"]
    assert runs(None)["migrate"]


def test_a_requirements_change_reruns_only_the_hooks_that_name_it() -> None:
    assert runs(("requirements.txt",)) == {"migrate": False, "check": True, "collectstatic": True}
