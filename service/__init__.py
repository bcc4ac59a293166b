"""unconv: a REST inference service for a deconvnet visualiser, an auto-encoder and a VAE.

Importing it, or any module under it, changes nothing in the process: the entry points that
serve (``python -m service``, ``service.api:app``) tune the process (``runtime.py``)."""

__version__ = "0.1.0"
