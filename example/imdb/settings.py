"""Settings of the example "imdb" app (seed 000): a movie list at /movie, SQLite in shared/."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# The deploy tool puts secrets in the environment of the WSGI script; this default is for the demo only.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.staticfiles", "movies"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "imdb.urls"
WSGI_APPLICATION = "imdb.wsgi.application"
# db.sqlite3 is a shared file: the release holds a link to <deploy_to>/shared/db.sqlite3.
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Tracebacks of failed requests go to stderr, which mod_wsgi writes to the vhost's error log: `fab logs` shows them.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False}},
}
