"""The one exception of the client: an error answer of the service."""

from __future__ import annotations

import httpx


class UnconvError(Exception):
    """An error answer of the service.

    Attributes
    ----------
    status : int
        The HTTP status, e.g. 404.
    code : str
        The service's stable code, e.g. ``unknown_model``; ``http_<status>`` when the answer
        was not the service's JSON error (a proxy in between, say).
    detail : str
        What was wrong and how to fix it.
    retry_after : float or None
        Seconds to wait before trying again (the ``Retry-After`` of a 503), else None.
    """

    def __init__(self, status: int, code: str, detail: str, retry_after: float | None = None):
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail, self.retry_after = status, code, detail, retry_after

    @classmethod
    def from_response(cls, response: httpx.Response) -> UnconvError:
        try:
            body = response.json()
            code, detail = str(body["error"]), str(body["detail"])
        except (ValueError, KeyError, TypeError):
            code, detail = f"http_{response.status_code}", response.text[:200]
        return cls(response.status_code, code, detail, retry_after(response))


def retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (the service sends seconds), else None."""
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return None
