"""Deploy the bundled example app (example/) with the tasks of this package; see fabric.yaml."""

from deploy.tasks import *  # noqa: F403
