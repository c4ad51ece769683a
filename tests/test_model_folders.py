"""Every model folder is valid; invalid metadata gives `path: field: message` errors."""

import pytest
import yaml

from harness import registry
from harness.errors import HarnessError
from harness.paths import MODELS_DIR


@pytest.mark.parametrize("folder", registry.model_dirs(), ids=lambda p: p.name)
def test_model_folder_is_valid(folder):
    model = registry.read_folder(folder)
    assert model.name == folder.name
    module = model.load_module()
    assert callable(module.make_model)


def test_template_is_valid_but_not_discovered():
    assert "_template" not in [p.name for p in registry.model_dirs()]
    meta = yaml.safe_load((MODELS_DIR / "_template" / "model.yaml").read_text())
    meta["name"] = "_template"  # the only field a copier must change
    errors = registry.validate_metadata(meta, MODELS_DIR / "_template" / "model.yaml", "_template")
    assert any("name" in e for e in errors)  # leading underscore is not a valid model name


def _folder(tmp_path, text):
    d = tmp_path / "models" / "bad_model"
    d.mkdir(parents=True)
    (d / "model.yaml").write_text(text)
    (d / "model.py").write_text("def make_model(ctx):\n    return None\n")
    return d


def test_errors_name_file_field_and_message(tmp_path):
    d = _folder(tmp_path, "name: other\nauthors: []\ndescription: short\nfeatures: [x]\nsoftware: [y]\nhardware: cpu\nbogus: 1\n")
    with pytest.raises(HarnessError) as err:
        registry.read_folder(d)
    lines = str(err.value).splitlines()
    where = f"{d / 'model.yaml'}"
    assert all(line.startswith(where + ": ") for line in lines)
    text = str(err.value)
    assert "authors: [] should be non-empty" in text
    assert "description: 'short' is too short" in text
    assert "(root): Additional properties are not allowed ('bogus' was unexpected)" in text
    assert "name: 'other' must equal the folder name 'bad_model'" in text


def test_invalid_yaml_and_missing_module(tmp_path):
    d = _folder(tmp_path, "name: [unclosed\n")
    with pytest.raises(HarnessError, match=r"model.yaml: \(file\): not valid YAML"):
        registry.read_folder(d)
    (d / "model.py").unlink()
    with pytest.raises(HarnessError, match=r"model.py: \(file\): missing"):
        registry.read_folder(d)


def test_discover_keeps_going_past_a_bad_folder(tmp_path):
    _folder(tmp_path, "name: bad_model\n")
    good = tmp_path / "models" / "train_median"
    good.mkdir()
    for f in ("model.yaml", "model.py"):
        (good / f).write_text((MODELS_DIR / "train_median" / f).read_text())
    ok, errors = registry.discover(tmp_path / "models")
    assert [m.name for m in ok] == ["train_median"]
    assert len(errors) == 1 and "bad_model/model.yaml: (root): 'authors' is a required property" in errors[0]
