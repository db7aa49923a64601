"""Test-wide fixtures live in tests/fixtures/*; each module owns one concern."""

pytest_plugins = [
    "tests.fixtures.broker",
    "tests.fixtures.model",
    "tests.fixtures.policy",
    "tests.fixtures.data",
    "tests.fixtures.order",
    "tests.fixtures.postgres",
    "tests.fixtures.signals",
]
