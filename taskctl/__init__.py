"""taskctl: operations toolkit for Celery task infrastructure."""

__version__ = "0.1.0"
