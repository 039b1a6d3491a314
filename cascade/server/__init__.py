"""Cascade as a service: an HTTP API (FastAPI + uvicorn), a web page and a Python client.

The top layer: it may import every package below. Nothing here imports FastAPI or uvicorn at
module level except ``app.py``/``routes.py``; :mod:`cascade.server.client` needs only httpx.
Install with ``pip install 'cascade-ir[server]'``; start with ``cascade serve INDEX``.
"""
