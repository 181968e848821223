from __future__ import annotations

from pathlib import Path

import pytest

from deploy.config import load
from deploy.errors import ConfigError
from deploy.render import render

BASE = {
    "app": "imdb",
    "deploy_to": "/srv/imdb",
    "server_name": "imdb.example.com",
    "wsgi": "imdb.wsgi:application",
    "django_settings": "imdb.settings",
    "static": {"/static/": "staticfiles"},
}


def directives(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


@pytest.mark.parametrize("count, names", [(3, "abc"), (2, "ab")])
def test_slots_vhost(count: int, names: str) -> None:
    daemon = {"user": "imdb", "processes": 3, "slots": count}
    out = render(load({**BASE, "daemon": daemon, "python_path": [".", "src"]}), "r", "abc")
    lines = directives(out["vhost.conf"])
    groups = [d for d in lines if d[0] == "WSGIDaemonProcess"]
    assert [g[1] for g in groups] == [f"imdb-{x}" for x in names]
    for g, slot in zip(groups, names, strict=True):
        for opt in (f"python-home=/srv/imdb/slots/{slot}/.venv", f"python-path=/srv/imdb/slots/{slot}:/srv/imdb/slots/{slot}/src",
                    f"home=/srv/imdb/slots/{slot}", "user=imdb", "processes=3", "display-name=%{GROUP}"):
            assert opt in g
    imports = [d for d in lines if d[0] == "WSGIImportScript"]
    assert [d[2] for d in imports] == [f"process-group=imdb-{x}" for x in names]
    assert ["RewriteMap", "fdslot", "txt:/srv/imdb/slots/live.map"] in lines
    assert ["WSGIProcessGroup", "%{ENV:FABDEPLOY_SLOT}"] in lines and ["WSGIScriptReloading", "Off"] in lines
    assert ["WSGIScriptAlias", "/", "/srv/imdb/slots/app.wsgi"] in lines
    # The preview route needs the host itself AND this deploy's token.
    assert any("X-Fabdeploy-Preview" in " ".join(d) and "${fdslot:token|-}" in " ".join(d) for d in lines)
    assert ["RewriteRule", "^", "-", "[E=FABDEPLOY_SLOT:imdb-${fdslot:preview|b}]"] in lines
    compile(out["slot.wsgi"], "slot.wsgi", "exec")


def test_the_wsgi_script_imports_from_the_release_it_was_reached_through(tmp_path: Path) -> None:
    script = render(load({**BASE, "python_path": [".", "src"]}), "r", "abc")["app.wsgi"]
    start = script.index("_base = ")
    code = script[start:script.index("from importlib import import_module")]
    fake_sys = __import__("types").SimpleNamespace(path=[])
    ns: dict[str, object] = {"__file__": "/srv/imdb/slots/b/.release/app.wsgi", "os": __import__("os"), "sys": fake_sys}
    exec(code, ns)
    assert ns["sys"].path[:2] == ["/srv/imdb/slots/b", "/srv/imdb/slots/b/src"]  # type: ignore[attr-defined]


def test_daemon_vhost() -> None:
    out = render(load({**BASE, "daemon": {"user": "imdb", "processes": 3, "slots": 1}}), "20260101T000000Z-abc", "abc")
    lines = directives(out["vhost.conf"])
    assert ["WSGIRestrictEmbedded", "On"] in lines
    daemon = next(d for d in lines if d[0] == "WSGIDaemonProcess")
    assert daemon[1] == "imdb"
    for opt in (
        "user=imdb",
        "processes=3",
        "threads=15",
        "python-home=/srv/imdb/current/.venv",
        "python-path=/srv/imdb/current",
        "display-name=%{GROUP}",
        "graceful-timeout=15",
    ):
        assert opt in daemon
    assert ["WSGIProcessGroup", "imdb"] in lines
    alias = next(d for d in lines if d[0] == "WSGIScriptAlias")
    assert alias[1:] == ["/", "/srv/imdb/current/.release/app.wsgi", "process-group=imdb", "application-group=%{GLOBAL}"]
    assert ["Alias", "/static/", "/srv/imdb/current/staticfiles/"] in lines
    assert not any(d[0] == "WSGIPythonHome" for d in lines)


def test_embedded_vhost_with_mpm_tuning() -> None:
    out = render(load({**BASE, "mode": "embedded", "mpm": {"StartServers": 2, "MaxRequestWorkers": 30}}), "r", "x")
    lines = directives(out["vhost.conf"])
    assert ["WSGIPythonHome", "/srv/imdb/current/.venv"] in lines
    assert ["StartServers", "2"] in lines and ["MaxRequestWorkers", "30"] in lines
    assert not any(d[0] in ("WSGIDaemonProcess", "WSGIProcessGroup", "WSGIRestrictEmbedded") for d in lines)


def test_wsgi_script_assigns_settings_and_compiles() -> None:
    out = render(load({**BASE, "environment": {"API_TOKEN": "s3cr'et"}}), "20260101T000000Z-abc", "abc")
    script = out["app.wsgi"]
    compile(script, "app.wsgi", "exec")
    assert "os.environ[\"DJANGO_SETTINGS_MODULE\"] = 'imdb.settings'" in script
    assert "setdefault" not in script.replace("not setdefault", "")
    assert "import_module('imdb.wsgi'), 'application'" in script
    assert "'s3cr\\'et'" in script or '"s3cr\'et"' in script


def test_any_wsgi_callable() -> None:
    out = render(load({**BASE, "wsgi": "myapp.web:app", "django_settings": None}), "r", "x")
    assert "import_module('myapp.web'), 'app'" in out["app.wsgi"]
    assert "DJANGO_SETTINGS_MODULE" not in out["app.wsgi"]


def test_template_errors_name_the_template(tmp_path: Path) -> None:
    (tmp_path / "conf_templates").mkdir()
    (tmp_path / "conf_templates" / "vhost.conf.j2").write_text("ServerName {{ no_such_thing }}\n")
    with pytest.raises(ConfigError, match="vhost.conf.j2.*no_such_thing"):
        render(load(BASE), "r", "x", tmp_path)
    (tmp_path / "conf_templates" / "vhost.conf.j2").write_text("{% if %}\n")
    with pytest.raises(ConfigError, match="vhost.conf.j2 line 1"):
        render(load(BASE), "r", "x", tmp_path)
