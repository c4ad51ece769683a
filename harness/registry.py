"""Model folders: discovery by glob, metadata validation, module import.

Adding a model = adding ``models/<name>/{model.yaml, model.py}``; nothing here changes."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import jsonschema
import yaml

from harness.errors import HarnessError, one_line
from harness.paths import MODELS_DIR, REPO_ROOT

SCHEMA_PATH = Path(__file__).parent / "schemas" / "model.schema.json"
METADATA_FILE = "model.yaml"
MODULE_FILE = "model.py"
PACKAGE = "kspacing_models"  # namespace the model modules are imported under


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class ModelFolder:
    name: str
    path: Path
    meta: dict

    @property
    def kind(self) -> str:
        return self.meta.get("kind", "model")

    def load_module(self) -> ModuleType:
        file = self.path / MODULE_FILE
        # Registered under a stable dotted name so fitted estimators pickle and unpickle.
        qualname = f"{PACKAGE}.{self.name}"
        spec = importlib.util.spec_from_file_location(qualname, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(PACKAGE, ModuleType(PACKAGE))
        sys.modules[qualname] = module
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as err:  # a broken contributor module must not end the run
            del sys.modules[qualname]
            raise HarnessError(f"{_rel(file)}: import failed ({type(err).__name__}: {err})") from None
        if not callable(getattr(module, "make_model", None)):
            raise HarnessError(f"{_rel(file)}: make_model: not defined (must return a fit/predict estimator)")
        return module


def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def validate_metadata(meta: object, path: Path, folder_name: str) -> list[str]:
    """All problems of one metadata file, each as ``path: field: message``."""
    where = _rel(path)
    if not isinstance(meta, dict):
        return [f"{where}: (root): must be a mapping, got {type(meta).__name__}"]
    errors = []
    validator = jsonschema.Draft202012Validator(schema())
    for err in sorted(validator.iter_errors(meta), key=lambda e: list(map(str, e.absolute_path))):
        field = ".".join(map(str, err.absolute_path)) or "(root)"
        errors.append(f"{where}: {field}: {err.message}")
    if isinstance(meta.get("name"), str) and meta["name"] != folder_name:
        errors.append(f"{where}: name: {meta['name']!r} must equal the folder name {folder_name!r}")
    return errors


def read_folder(path: Path) -> ModelFolder:
    """Parse and validate one model folder; raises HarnessError listing every problem."""
    meta_path = path / METADATA_FILE
    if not meta_path.is_file():
        raise HarnessError(f"{_rel(meta_path)}: (file): missing")
    if not (path / MODULE_FILE).is_file():
        raise HarnessError(f"{_rel(path / MODULE_FILE)}: (file): missing")
    try:
        meta = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise HarnessError(f"{_rel(meta_path)}: (file): not valid YAML ({one_line(err)})") from None
    errors = validate_metadata(meta, meta_path, path.name)
    if errors:
        raise HarnessError("\n".join(errors))
    return ModelFolder(name=path.name, path=path, meta=meta)


def model_dirs(models_dir: Path = MODELS_DIR) -> list[Path]:
    """Model folders, sorted; names starting with '_' or '.' (e.g. _template) are skipped."""
    return sorted(p for p in Path(models_dir).glob("*") if p.is_dir() and not p.name.startswith(("_", ".", "__")))


def no_folder(name: str, models_dir: Path, known=None) -> HarnessError:
    """The error for a model name with no folder, listing the ``known`` names (default: the
    model folders present)."""
    known = sorted(p.name for p in model_dirs(models_dir)) if known is None else list(known)
    return HarnessError(f"no model folder {Path(models_dir).name}/{name}/ (known: {', '.join(known) or 'none'})")


def dependency_problems(folders: list[ModelFolder], models_dir: Path = MODELS_DIR) -> list[tuple[str, str]]:
    """(model name, one line) per ``needs``/``after`` entry that names no model folder: the
    scheduler orders only the models of a run, so a misspelt name would otherwise be
    dropped and the model started without what it waits for."""
    present = {p.name for p in model_dirs(models_dir)}
    return [(m.name, f"{_rel(m.path / METADATA_FILE)}: {field}: no model folder {Path(models_dir).name}/{d}/"
                     f" (known: {', '.join(sorted(present - {m.name})) or 'none'})")
            for m in folders for field in ("needs", "after") for d in m.meta.get(field, []) if d not in present]


def discover(models_dir: Path = MODELS_DIR) -> tuple[list[ModelFolder], list[str]]:
    """Valid folders (sorted by run_order, then name) and the errors of invalid ones."""
    ok, errors = [], []
    for path in model_dirs(models_dir):
        try:
            ok.append(read_folder(path))
        except HarnessError as err:
            errors.append(str(err))
    ok.sort(key=lambda m: (m.meta.get("run_order", 100), m.name))
    return ok, errors
