"""The ipywidgets experiment form: the same spec and messages as the core, shown inline."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from candle_lab.gallery import gallery_models
from candle_lab.spec import load_spec, spec_from_dict

pytest.importorskip("ipywidgets")
from candle_lab.widgets import ExperimentForm


def _row(form: ExperimentForm, name: str) -> list:
    [box] = [b for b in form._space_rows.children if b.children[0].value == name]
    return list(box.children)


def test_gallery_model_gives_its_spec_and_the_code_gives_it_back() -> None:
    form = ExperimentForm(gallery="digits_sklearn")
    expected = load_spec(gallery_models()["digits_sklearn"].spec_file)
    assert form.spec == expected
    assert spec_from_dict(yaml.safe_load(form.to_yaml())) == expected
    namespace: dict = {}
    exec(form.to_python().replace("exp = candle_lab.run(spec, wait=False)", ""), namespace)
    assert namespace["spec"] == expected


def test_edits_reach_the_spec_and_errors_show_inline() -> None:
    form = ExperimentForm(gallery="digits_sklearn")
    form._widgets["max_trials"].value = 7
    form._widgets["target"].value = "0.05"
    form._widgets["seed"].value = "11"
    assert (form.spec.budget.max_trials, form.spec.budget.target, form.spec.search.seed) == (7, 0.05, 11)
    form._widgets["target"].value = "low"
    assert "budget.target: expected a number or nothing, got &#x27;low&#x27;" in form._problem_boxes["Search"].value
    form._widgets["target"].value = ""
    assert form.spec.budget.target is None and form._problem_boxes["Search"].value == ""

    low = _row(form, "units")[2]
    low.value = "abc"
    assert 'space row 1 (units), low: &quot;abc&quot; is not a number' in form._problem_boxes["Search space"].value
    low.value = "8"
    assert form._problem_boxes["Search space"].value == ""
    assert form.spec.space.parameters[0].low == 8

    form._widgets["profile"].value = "lab"
    assert form._widgets["partition"].options == ("", "gpu", "cpu")
    form._widgets["gpus"].value = 3
    assert "compute.gpus" in form._problem_boxes["Compute job"].value
    assert form.run() is None and "not submitted" in form.form.message


def test_a_condition_is_edited_in_its_row() -> None:
    form = ExperimentForm(gallery="digits_sklearn")
    when = _row(form, "alpha")[7]
    when.value = "layers >= 2"
    alpha = next(p for p in form.spec.space.parameters if p.name == "alpha")
    assert alpha.when == "layers >= 2"
    when.value = "layer >= 2"
    assert "no parameter is named &#x27;layer&#x27; (did you mean &#x27;layers&#x27;?)" in (
        form._problem_boxes["Search space"].value)
    when.value = ""
    assert form._problem_boxes["Search space"].value == ""


def test_space_rows_can_be_added_and_removed() -> None:
    form = ExperimentForm(gallery="digits_sklearn")
    before = len(form.spec.space.parameters)
    form._add_row()
    assert len(form.spec.space.parameters) == before + 1
    remove = form._space_rows.children[-1].children[-1]
    remove.click()
    assert len(form.spec.space.parameters) == before


def test_spec_file_round_trip(tmp_path: Path) -> None:
    form = ExperimentForm(gallery="nt3")
    form._widgets["workers"].value = 3
    saved = form.form.save(tmp_path / "nt3.yaml")
    assert saved is not None
    other = ExperimentForm(gallery=None)
    other.form.load_file(saved)
    assert other.spec == form.spec and other._widgets["workers"].value == 3
