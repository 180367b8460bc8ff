"""Index a function app the way the Python worker does, and print what it registered as JSON.

Runs under Python 3.13 with `azure-functions-runtime` (the worker's own loader and function
registry; see tests/acceptance/test_worker_index.py, which sets up that interpreter). Usage:

    python worker_index_probe.py /path/to/function_app.py

Like the worker's init request, it puts the app's folder first on sys.path, loads the binding
registry, imports the script with `loader.index_function_app`, then runs
`loader.process_indexed_function`, which hands every function to
`Registry.add_indexed_function` (it checks each parameter against its binding: missing or extra
parameters, Out annotations, types that do not fit the binding, SDK-type bindings) and builds
the raw bindings sent to the host (through the deferred-binding extension for SDK types). Any
indexing error propagates: the traceback goes to stderr and the exit status is non-zero.

The registry wants the worker's protobuf module only for `BindingInfo` enum values; a stand-in
with the same numbers (RpcBindingInfo: direction out=1, inout=2; data type undefined=0) is used.
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path
from typing import Any

MARKER = "WORKER_INDEX_JSON "


class _BindingInfo:
    """Stand-in for `protos.BindingInfo`: the enum values the registry compares against."""

    undefined = 0
    out = 1
    inout = 2

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


PROTOS = types.SimpleNamespace(
    BindingInfo=_BindingInfo,
    RpcFunctionMetadata=dict,
    RpcRetryOptions=dict,
)


def _type_name(tp: Any) -> str:
    if tp is None:
        return ""
    return f"{getattr(tp, '__module__', '')}.{getattr(tp, '__qualname__', repr(tp))}"


def index(script: Path) -> list[dict[str, Any]]:
    """What the worker's init request does: load bindings, index, register every function."""
    from azure_functions_runtime import functions, loader
    from azure_functions_runtime.bindings import meta

    app_dir = str(script.parent)
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    os.chdir(app_dir)
    meta.load_binding_registry()
    indexed = loader.index_function_app(str(script))
    registry = functions.Registry()
    # Calls registry.add_indexed_function(fn, protos) for each function, then builds the
    # binding and raw-binding metadata sent to the host.
    metadata, _logs = loader.process_indexed_function(PROTOS, registry, indexed, app_dir)
    result = []
    for entry in metadata:
        info = registry.get_function(entry["function_id"])
        result.append(
            {
                "name": info.name,
                "is_http_func": info.is_http_func,
                "has_return": info.has_return,
                "deferred_bindings_enabled": info.deferred_bindings_enabled,
                "input_types": {
                    param: {
                        "binding": t.binding_name,
                        "pytype": _type_name(t.pytype),
                        "deferred": t.deferred_bindings_enabled,
                    }
                    for param, t in info.input_types.items()
                },
                "output_types": sorted(info.output_types),
                "bindings": [json.loads(b) for b in entry["raw_bindings"]],
            }
        )
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    functions = index(Path(argv[1]).resolve())
    print(MARKER + json.dumps(functions, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
