"""fabdeploy: deploy WSGI apps to Apache/mod_wsgi with Fabric. `import deploy; deploy.deploy(hosts, ...)`."""

from deploy import fleet
from deploy.api import (
    Project,
    Result,
    check,
    deploy,
    exec_command,
    logs,
    maintenance,
    plan,
    project,
    reload,
    rollback,
    setup,
    status,
    unlock,
    watch,
)
from deploy.config import Settings, load
from deploy.errors import DeployError

__all__ = [
    "DeployError",
    "Project",
    "Result",
    "Settings",
    "check",
    "deploy",
    "exec_command",
    "fleet",
    "load",
    "logs",
    "maintenance",
    "plan",
    "project",
    "reload",
    "rollback",
    "setup",
    "status",
    "unlock",
    "watch",
]
__version__ = "0.1.0"
