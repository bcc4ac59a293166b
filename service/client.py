"""Deprecated: the client is its own distribution, ``unconv-client`` (package ``unconv_client``,
``pip install ./client``), which needs no torch. This module re-exports it for one release.

Unlike the old client, ``unconv_client`` sends only the parameters a caller gives (the
service's defaults apply to the rest), and its optional parameters are keyword-only.
"""

import sys
import warnings

try:
    from unconv_client import AsyncUnconvClient, UnconvClient, UnconvError
    from unconv_client.cli import build_parser, main
except ImportError as err:  # pragma: no cover - the service's dev install has it
    raise ImportError(
        "service.client is now the package unconv_client: pip install ./client"
    ) from err

warnings.warn(
    "service.client is deprecated: import unconv_client (pip install ./client) instead",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["AsyncUnconvClient", "UnconvClient", "UnconvError", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
