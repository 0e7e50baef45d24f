"""PyTorch reference models for the parity tests: a thin re-export of
tools/torch_models.py (the single definition, shared with
tools/load_checkpoint.py), so tests can `import torch_models` from tests/."""
import os
import sys

_TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tools")
if _TOOLS not in sys.path:
    sys.path.insert(0, _TOOLS)

# Load tools/torch_models.py under its own name even though this file is also
# called torch_models: take it from the tools directory explicitly.
import importlib.util as _util

_spec = _util.spec_from_file_location("_sparsetrain_torch_models", os.path.join(_TOOLS, "torch_models.py"))
_module = _util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
sys.modules.setdefault("_sparsetrain_torch_models", _module)

globals().update({k: v for k, v in vars(_module).items() if not k.startswith("__")})
__all__ = list(_module.__all__)
