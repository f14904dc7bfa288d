"""``mmgeo serve``: one process holds the store and the models and answers many clients over HTTP."""

from mmgeo.serve.app import ServeLimits, create_app, listen

__all__ = ["ServeLimits", "create_app", "listen"]
