"""The benchmark and the README's figures.

Every bench process limits OpenMP's spinning as the service's entry points do
(``GOMP_SPINCOUNT``, read once when torch loads), so that the ceiling runs as the service does.
"""

from service.runtime import limit_openmp_spinning

limit_openmp_spinning()
