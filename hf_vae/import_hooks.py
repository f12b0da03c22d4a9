"""Post-import hooks: run a callback once a module has been imported, without importing it.

`import hf_vae` stays light (about what `import torch, transformers` costs) because the heavy modules it
hooks into are imported only by whoever uses them: transformers' `modeling_utils` (through `AutoModel`),
its pipelines and image processors, and diffusers. Python has no post-import hooks, so `when_imported`
puts a finder first on `sys.meta_path` that, for the one module named, lets the other finders find it and
wraps that module's loader so the callback runs right after the module's code has run. A module already
imported gets its callback at once.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable


class _PostImportHook(importlib.abc.MetaPathFinder):
    """Finds `module_name` like the rest of `sys.meta_path` would, and once its loader has run it, leaves
    `sys.meta_path` and calls the callbacks; every other name passes through."""

    def __init__(self, module_name: str):
        self.module_name = module_name
        self.callbacks: list[Callable[[], None]] = []
        self._searching = False  # while it asks the other finders, it must not answer itself

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.module_name or self._searching:
            return None
        self._searching = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._searching = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_call_back(module):
            exec_module(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            for callback in self.callbacks:
                callback()

        spec.loader.exec_module = exec_then_call_back  # this spec's loader instance only
        return spec


def when_imported(module_name: str, callback: Callable[[], None]) -> None:
    """Call `callback()` once `module_name` is imported: now if it already is, else right after its import
    (by anyone). Adding the same callback twice for a module that is not imported yet adds it once."""
    if module_name in sys.modules:
        callback()
        return
    for finder in sys.meta_path:
        if isinstance(finder, _PostImportHook) and finder.module_name == module_name:
            if callback not in finder.callbacks:
                finder.callbacks.append(callback)
            return
    hook = _PostImportHook(module_name)
    hook.callbacks.append(callback)
    sys.meta_path.insert(0, hook)


def is_initializing(module_name: str) -> bool:
    """Whether `module_name` is being imported right now (in `sys.modules`, its code still running): its
    names may not exist yet, and importing what imports it back is a circular import."""
    module = sys.modules.get(module_name)
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))
