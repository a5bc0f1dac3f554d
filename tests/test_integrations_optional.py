"""The integrations are optional: `import resbench` loads neither framework, and a missing one is one line
naming the pip extra that installs it. One fresh interpreter checks all of it (torch is imported once)."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = """
import importlib, importlib.abc, json, sys
import resbench, resbench.watching, resbench.integrations
loaded = sorted(m for m in ("lightning", "pytorch_lightning", "transformers") if m in sys.modules)

class Absent(importlib.abc.MetaPathFinder):  # as if neither framework were installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("lightning", "transformers"):
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, Absent())
errors = {}
for integration in ("lightning", "transformers"):
    try:
        importlib.import_module(f"resbench.integrations.{integration}")
    except ImportError as err:
        errors[integration] = [type(err).__name__, str(err), err.__cause__ is None and err.__suppress_context__]
print(json.dumps({"loaded": loaded, "errors": errors}))
"""


def test_import_resbench_loads_no_framework_and_a_missing_one_names_its_extra():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    found = json.loads(result.stdout)
    assert found["loaded"] == []
    assert found["errors"] == {
        integration: ["ImportError", (f"resbench.integrations.{integration} needs {integration}: "
                                      f"pip install 'resbench[{integration}]'"), True]
        for integration in ("lightning", "transformers")}
