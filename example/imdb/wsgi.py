"""WSGI entry point when run outside the deploy tool (the tool renders its own script)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ["DJANGO_SETTINGS_MODULE"] = "imdb.settings"
application = get_wsgi_application()
