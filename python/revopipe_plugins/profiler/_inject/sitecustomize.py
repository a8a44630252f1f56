"""Put on PYTHONPATH by `revopipe profile`: starts the sampler in every Python process the
command runs, then hands over to whichever `sitecustomize` this one shadows.

Stdlib only, and loads the profiler's modules by path, so the child never imports revopipe
(see bootstrap.py). Python skips this file under `-S`, `-I` or `-E`: such a command is not
profiled and `revopipe profile` says so.
"""

import importlib.machinery
import importlib.util
import os
import sys


def _load(name: str, path: str) -> object:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"revopipe profile: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is built
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _start() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    package = os.path.dirname(here)
    sampler = _load("_revopipe_profiler_sampler", os.path.join(package, "sampler.py"))
    boot = _load("_revopipe_profiler_bootstrap", os.path.join(package, "bootstrap.py"))
    boot.activate(sampler.Sampler, sampler.OWN_THREAD_PREFIX)  # type: ignore[attr-defined]


def _chain() -> None:
    # the program should see neither this directory nor a missing sitecustomize of its own
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", sys.path)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


if os.environ.get("REVOPIPE_PROFILE_DIR"):
    try:
        _start()
    except Exception as exc:  # never break the program being profiled
        print(f"revopipe profile: could not start the sampler: {exc!r}", file=sys.stderr)
_chain()
