"""A forkserver context whose children do not run the caller's main script again.

multiprocessing's children import the parent's ``__main__`` by path, so a script that calls ``clipsearch.index``
at its top level, without the ``if __name__ == "__main__"`` guard, would run again in every decode worker (and
start pools of its own). Nothing a decode worker runs lives in ``__main__`` (its work is indexer.decode_pool's
functions and a ``geometry.Plan``), so the child is told of no main. tests/test_api.py runs such a script.

The classes live at module level: a process object is pickled to its child, which imports this module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from multiprocessing import context, popen_forkserver, spawn
from typing import Any

_PREPARING = threading.Lock()


def _without_main(prepare: Callable[[str], dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
    def prepared(name: str) -> dict[str, Any]:
        data = prepare(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data
    return prepared


class PopenWithoutMain(popen_forkserver.Popen):
    def _launch(self, process_obj: Any) -> None:
        with _PREPARING:  # the one moment spawn's function is swapped; launches here are serialised
            prepare = spawn.get_preparation_data
            spawn.get_preparation_data = _without_main(prepare)
            try:
                super()._launch(process_obj)
            finally:
                spawn.get_preparation_data = prepare


class ProcessWithoutMain(context.ForkServerProcess):  # type: ignore[misc]
    @staticmethod
    def _Popen(process_obj: Any) -> Any:  # noqa: N802 (multiprocessing's name)
        return PopenWithoutMain(process_obj)


class WithoutMain(context.ForkServerContext):  # type: ignore[misc]
    Process = ProcessWithoutMain
