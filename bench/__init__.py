"""The benchmark and the README's figures.

Importing the service first gives every bench process the service's OpenMP setting
(``GOMP_SPINCOUNT``, read once when torch loads), so that the ceiling runs as the service does.
"""

import service  # noqa: F401
