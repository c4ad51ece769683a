"""The layout: the core (harness/) never imports the model library (modellib/), model
folders do; importing a module does no work (no featurizers, no torch)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

from harness import paths

ROOT = paths.REPO_ROOT


def _imports(path) -> set[str]:
    """Every module an import statement in ``path`` names (top level and inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_core_never_imports_the_model_library():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.split(".")[0] == "modellib")
                 for p in sorted((ROOT / "harness").rglob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}
    # and the library builds on the core's one mesh and one composition featurisation
    lib = set().union(*(_imports(p) for p in (ROOT / "modellib").rglob("*.py")))
    assert {"harness.kpoints", "harness.chemistry"} <= lib


def test_model_folders_reach_shared_code_only_through_the_model_library():
    for p in sorted((ROOT / "models").glob("*/model.py")):
        core = {m for m in _imports(p) if m.startswith("harness")}
        # a model folder may use the core's public vocabulary, never its internals
        assert core <= {"harness", "harness.kpoints"}, (p, core)


def _fresh(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_whole_core_loads_no_model_library_nor_torch():
    mods = sorted(f"harness.{p.stem}" for p in (ROOT / "harness").glob("*.py") if p.stem not in ("__main__",))
    got = _fresh("import importlib, json, sys\n"
                 f"for m in {mods!r}: importlib.import_module(m)\n"
                 "print(json.dumps(sorted({k.split('.')[0] for k in sys.modules} & {'modellib', 'torch', 'crabnet', "
                 "'lightgbm', 'xgboost'})))")
    assert got == []


def test_importing_the_feature_modules_builds_no_featurizer():
    got = _fresh("import json, sys\n"
                 "import modellib.features.structure as sf, modellib.features.physics, modellib.features.composition\n"
                 "print(json.dumps({'layout_built': sf._layout.cache_info().currsize,\n"
                 "  'matminer_structure': 'matminer.featurizers.structure' in sys.modules,\n"
                 "  'torch': 'torch' in sys.modules}))")
    assert got == {"layout_built": 0, "matminer_structure": False, "torch": False}
    # the constants still read as before, built on first access
    from modellib.features import structure as sf

    assert sf.N_FEATURES == 273 and len(sf.STRUCTURAL_LABELS) == 128 and len(sf.COMPOSITION_LABELS) == 145
