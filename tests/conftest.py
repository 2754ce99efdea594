"""Fixtures live in tests/fixtures/, one module per real part they start."""

pytest_plugins = [
    "tests.fixtures.redis",
    "tests.fixtures.simulator",
    "tests.fixtures.daemon",
    "tests.fixtures.steer_process",
    "tests.fixtures.api",
]
