"""What the tests and the benchmark share: the service started as users start it (``server``),
readers of ``/proc`` (``proc``) and random AlexNet weights the service trusts (``fake_weights``).

Not part of the service: nothing under ``service/`` or ``training/`` imports it.
"""
