"""plmforge: fine-tune protein language models to predict protein properties.

The Python entry points (loaded on first use, so `import plmforge` stays light):
- `plmforge.load_config(path, overrides)` -> RunConfig, and `plmforge.train.run.train(config)` -> RunResult;
- `plmforge.cross_validate(config)` (config with cv.folds=K) -> CVResult: K fold runs, mean +- sd, ensemble;
- `plmforge.predict(run_dir, sequences)` -> PredictionResult (`.table`, `.frames`, `.write(path)`);
- `plmforge.evaluate(run_dir, data)` -> EvaluationResult (`.metrics`, `.blob`, `.write(dir)`);
- `plmforge.load_run(run_dir)` -> LoadedRun, to predict many times without reloading;
- `plmforge.embed(model, sequences, EmbedOptions(...))` -> Embeddings (numpy arrays by id);
- `plmforge.structure_tokens(paths)` -> StructureResult (`.table()`, `.skipped()`, `.write(csv)`), and
  `plmforge.add_structure_columns(dataset, structures_dir, out)` -> JoinReport (per-row problems).
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {"load_config": "plmforge.config", "predict": "plmforge.api", "embed": "plmforge.embed",
            "evaluate": "plmforge.api", "load_run": "plmforge.api", "structure_tokens": "plmforge.structure.build",
            "add_structure_columns": "plmforge.structure.dataset", "cross_validate": "plmforge.cv"}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'plmforge' has no attribute {name!r}")
