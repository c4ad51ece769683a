"""``harness new-model NAME``: a new model folder, copied from models/_template/."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from harness import registry
from harness.errors import HarnessError
from harness.paths import REPO_ROOT

TEMPLATE_DIR = REPO_ROOT / "models" / "_template"
TEMPLATE_NAME = "your_model_name"  # the placeholder in the template's model.yaml


def name_pattern() -> str:
    """The folder-name rule, read from the metadata schema (its one home)."""
    return registry.schema()["properties"]["name"]["pattern"]


def new_model(name: str, models_dir: Path, template_dir: Path = TEMPLATE_DIR) -> Path:
    """Create ``models_dir/name`` from the template with ``name`` set; returns its path.
    Refuses invalid or existing names (HarnessError, one line); nothing is written then."""
    target = Path(models_dir) / name
    if not re.fullmatch(name_pattern(), name) or name.startswith("_"):
        raise HarnessError(f"{target}: invalid model name {name!r}: use lowercase letters, digits and underscores, "
                           "starting with a letter or digit (e.g. rf_structure)")
    if target.exists():
        raise HarnessError(f"{target}: already exists; pick another name (an existing folder is never touched)")
    meta_text = (template_dir / registry.METADATA_FILE).read_text(encoding="utf-8")
    line = re.compile(rf"^name:\s*{TEMPLATE_NAME}\b", re.M)
    if len(line.findall(meta_text)) != 1:
        raise HarnessError(f"{template_dir / registry.METADATA_FILE}: name: expected one 'name: {TEMPLATE_NAME}' line")
    Path(models_dir).mkdir(parents=True, exist_ok=True)
    # Build beside the target, validate, then rename: a failure leaves nothing behind.
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=models_dir))
    try:
        build = tmp / name
        shutil.copytree(template_dir, build, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (build / registry.METADATA_FILE).write_text(line.sub(f"name: {name}", meta_text), encoding="utf-8")
        registry.read_folder(build)  # the copy must validate as-is
        build.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


PLACEHOLDER_FIELDS = ("authors", "description", "features", "hardware", "team_name")  # `new-model` copies them as is


def placeholder_problems(folders, template_dir: Path = TEMPLATE_DIR) -> list[str]:
    """One line per metadata value still equal to the template's placeholder (an author
    'Your Name', a description 'One or two sentences: …'): `run` accepts them so that a
    newcomer can try a model first, but `validate` (CI) does not let them be published."""
    import yaml

    try:
        template = yaml.safe_load((template_dir / registry.METADATA_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []

    def leaves(value, where):
        if isinstance(value, dict):
            return [x for k, v in value.items() for x in leaves(v, f"{where}.{k}")]
        if isinstance(value, list):
            return [x for n, v in enumerate(value) for x in leaves(v, f"{where}[{n}]")]
        return [(where, value)]

    placeholders = {v for f in PLACEHOLDER_FIELDS for _, v in leaves(template.get(f), f) if isinstance(v, str) and v}
    return [f"{registry._rel(m.path / registry.METADATA_FILE)}: {where}: still the template's placeholder {value!r}"
            for m in folders for f in PLACEHOLDER_FIELDS for where, value in leaves(m.meta.get(f), f)
            if isinstance(value, str) and value in placeholders]
