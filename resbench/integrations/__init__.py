"""resbench's probes inside the trainers people already use: thin adapters over `resbench.watching.Watch`.

    from resbench.integrations.lightning import ResbenchCallback        # pip install "resbench[lightning]"
    from resbench.integrations.transformers import ResbenchCallback     # pip install "resbench[transformers]"

Each module imports its framework when it is imported itself (never by `import resbench`); without the
framework installed, the import fails with one line naming the extra that installs it.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, what: str) -> ModuleType:
    """`module` imported, or an ImportError of one line naming the pip extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{what} needs {module.split('.')[0]}: pip install 'resbench[{extra}]'") from None
