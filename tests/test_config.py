from __future__ import annotations

from typing import Any

import pytest

from deploy.config import load
from deploy.errors import ConfigError

BASE: dict[str, Any] = {
    "app": "imdb",
    "deploy_to": "/srv/imdb",
    "server_name": "imdb.example.com",
    "wsgi": "imdb.wsgi:application",
}


def cfg(**over: Any) -> dict[str, Any]:
    return {**BASE, **over}


def test_defaults() -> None:
    s = load(cfg())
    assert s.mode == "daemon" and s.reload_strategy == "slots" and s.slotted and s.keep_releases == 5
    assert s.daemon.processes == 2 and s.apache.ctl == "apache2ctl" and s.apache.sudo
    assert load(cfg(mode="embedded")).reload_strategy == "graceful"


def test_missing_section() -> None:
    with pytest.raises(ConfigError, match="no 'deploy:' section"):
        load(None)


@pytest.mark.parametrize("key", ["app", "deploy_to", "server_name", "wsgi"])
def test_missing_required(key: str) -> None:
    data = cfg()
    del data[key]
    with pytest.raises(ConfigError, match=f"missing required setting deploy.{key}"):
        load(data)


def test_unknown_setting_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'keep_release'.*keep_releases"):
        load(cfg(keep_release=3))
    with pytest.raises(ConfigError, match=r"unknown setting daemon\.'procs'.*processes"):
        load(cfg(daemon={"procs": 2}))


def test_wrong_types() -> None:
    with pytest.raises(ConfigError, match="daemon.processes must be a whole number, got 'many'"):
        load(cfg(daemon={"processes": "many"}))
    with pytest.raises(ConfigError, match="keep_releases must be a whole number"):
        load(cfg(keep_releases=True))
    with pytest.raises(ConfigError, match="mode must be one of daemon, embedded"):
        load(cfg(mode="cgi"))


@pytest.mark.parametrize(
    "key,value",
    [
        ("app", "imdb; rm -rf /"),
        ("app", "$(id)"),
        ("deploy_to", "/srv/my app"),
        ("deploy_to", "srv/imdb"),
        ("deploy_to", "/srv/../etc"),
        ("server_name", "a b"),
        ("wsgi", "imdb.wsgi:app;x"),
    ],
)
def test_unsafe_names_rejected(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"setting {key}"):
        load(cfg(**{key: value}))


def test_stages_override_and_select() -> None:
    data = cfg(
        stages={"production": {"hosts": ["web1", "web2"], "daemon": {"processes": 4}}, "staging": {"hosts": ["s1"]}},
        default_stage="staging",
    )
    assert load(data).hosts == ("s1",)
    prod = load(data, stage="production")
    assert prod.hosts == ("web1", "web2") and prod.daemon.processes == 4 and prod.daemon.threads == 15
    assert prod.stage == "production"
    with pytest.raises(ConfigError, match=r"unknown stage 'prod'; stages in config: production, staging"):
        load(data, stage="prod")


def test_environment_value_never_echoed() -> None:
    with pytest.raises(ConfigError) as exc:
        load(cfg(environment={"SECRET": ["hunter2"]}))
    assert "hunter2" not in str(exc.value)


def test_hooks_forms() -> None:
    s = load(cfg(hooks=["python manage.py migrate", {"name": "static", "run": "python manage.py collectstatic"}]))
    assert [h.name for h in s.hooks] == ["python", "static"]
    with pytest.raises(ConfigError, match=r"hooks\[0\].run"):
        load(cfg(hooks=[{"name": "x"}]))


def test_listen_gives_check_address() -> None:
    s = load(cfg(listen="*:8080"))
    assert (s.http_addr, s.http_port) == ("127.0.0.1", 8080)


def test_rolling_falls_back_to_touch_with_one_process() -> None:
    s = load(cfg(reload="rolling", daemon={"processes": 1}))
    assert s.reload_strategy == "touch" and "processes" in (s.reload_note or "")
    assert load(cfg(daemon={"processes": 1, "slots": 1})).reload_strategy == "touch"
    assert load(cfg(daemon={"slots": 1})).reload_strategy == "rolling"
    assert not load(cfg(reload="rolling")).slotted  # an in-place reload asked for: one slot
    with pytest.raises(ConfigError, match="embedded mode reloads with graceful"):
        load(cfg(mode="embedded", reload="rolling"))


def test_health_settings() -> None:
    s = load(cfg(health={"path": "/movie", "contains": "Godfather"}, warmup=["/movie"]))
    assert s.health.path == "/movie" and s.health.status == 200 and s.warmup == ("/movie",)
    with pytest.raises(ConfigError, match="health.status"):
        load(cfg(health={"status": 42}))


def test_dev_stage_and_production() -> None:
    stages = {"dev": {"dev": True}, "production": {}, "prod2": {"production": True}}
    dev = load(cfg(stages=stages), stage="dev")
    assert dev.dev and not dev.production and dev.reload_strategy == "touch"
    assert load(cfg(stages=stages), stage="production").production  # by its name
    assert load(cfg(stages=stages), stage="prod2").production  # by its setting
    with pytest.raises(ConfigError, match="setting dev: true is refused in stage 'production'"):
        load(cfg(stages={"production": {"dev": True}}), stage="production")
    with pytest.raises(ConfigError, match="setting dev: true is refused in stage 'x'"):
        load(cfg(stages={"x": {"dev": True, "production": True}}), stage="x")
    with pytest.raises(ConfigError, match="dev: true needs mode: daemon"):
        load(cfg(dev=True, mode="embedded"))
    with pytest.raises(ConfigError, match="setting output must be one of text, json"):
        load(cfg(output="yaml"))


def test_each_setting_is_declared_once_with_its_check() -> None:
    """Field metadata drive validation: every setting (and nested one) carries its own check."""
    import dataclasses

    from deploy.config import Apache, Daemon, Health, Settings

    for cls in (Settings, Daemon, Apache, Health):
        for f in dataclasses.fields(cls):
            if f.name != "stage":
                assert callable(f.metadata.get("check")), f"{cls.__name__}.{f.name} has no check"


def test_a_nul_byte_is_named_before_any_host() -> None:
    """A NUL reaches the host in a shell variable, which cannot hold one: it used to surface mid-deploy."""
    with pytest.raises(ConfigError, match=r"setting hooks\[0\]\.run holds a NUL byte"):
        load({**BASE, "hooks": [{"name": "x", "run": "echo a\0b"}]})
    with pytest.raises(ConfigError, match=r"setting environment\.K holds a NUL byte"):
        load({**BASE, "environment": {"K": "a\0"}})
