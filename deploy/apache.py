"""Apache/mod_wsgi on the host: the variables the phase scripts use to drive it, and reading `apache2 -V`."""

from __future__ import annotations

from deploy.config import Settings
from deploy.remote import Value


def variables(s: Settings) -> dict[str, Value]:
    return {
        "APACHE_CTL": s.apache.ctl,
        "APACHE_SUDO": s.apache.sudo,
        "APACHE_SITES": s.apache.sites_dir,
        "APACHE_ENABLE": s.apache.enable,
        "VHOST_NAME": s.vhost_name,
        # Defined only by a config test of a candidate vhost: the installed one is left out then (lib.sh).
        "CHECK_DEFINE": f"fabdeploy_candidate_{s.app}",
        "MODE": s.mode,
    }


def mode_of(process_group: str) -> str:
    """mod_wsgi.process_group is the daemon group's name, or '' in embedded mode (seed 004)."""
    return "daemon" if process_group else "embedded"
