import doctest
import importlib

import pytest

MODULES = ["types", "signals", "join", "consensus", "validate", "labelset"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(f"hub.labels.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize("name", MODULES)
def test_public_functions_have_docstrings(name: str) -> None:
    module = importlib.import_module(f"hub.labels.{name}")
    public = [getattr(module, n) for n in dir(module) if not n.startswith("_")]
    own = [obj for obj in public if callable(obj) and getattr(obj, "__module__", None) == module.__name__]
    assert own
    assert all(obj.__doc__ for obj in own), [obj for obj in own if not obj.__doc__]
