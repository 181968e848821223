from __future__ import annotations

from deploy import planning as plan
from deploy import render
from deploy.config import load

BASE = {"app": "imdb", "deploy_to": "/srv/imdb", "server_name": "imdb.example.com", "wsgi": "imdb.wsgi"}


def test_environment_values_never_in_a_diff() -> None:
    old = render.render(load({**BASE, "environment": {"TOKEN": "old-secret"}}), "20260101T000000Z-a", "a")["app.wsgi"]
    new = render.render(load({**BASE, "environment": {"TOKEN": "new-secret"}}), "20260101T000001Z-b", "b")["app.wsgi"]
    d = plan.diff(plan.mask(old), plan.mask(new), "app.wsgi")
    assert "secret" not in d
    assert "os.environ['TOKEN'] = <hidden>" in plan.mask(new)
    assert "os.environ[\"DEPLOY_RELEASE\"] = '20260101T000001Z-b'" in plan.mask(new)


def test_diff_of_nothing_and_of_the_same() -> None:
    assert plan.diff("a\n", "a\n", "x") == ""
    assert plan.diff(None, "a\n", "x").splitlines()[-1] == "+a"


def test_plan_text_for_a_host_not_set_up() -> None:
    p = {"set_up": False, "revision": "abcdef1234567890"}
    assert "not set up: run fab setup first" in plan.text("web1", p)
