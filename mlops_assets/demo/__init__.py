"""``make demo`` (``python -m mlops_assets.demo``): see ``__main__.py``."""
