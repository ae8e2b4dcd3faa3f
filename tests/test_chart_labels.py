"""Charts name languages in full, in the order en, zh, pt, ar, tr, ru, and every axis says its unit.
The figure objects are inspected (tick labels, axis labels), not pixels."""

import json

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from llava.eval.languages import LANGUAGE_NAMES, LANGUAGES, language_label, ordered_languages
from llava.eval.reports import plot_radar
from parrot_moe.analysis import main as analysis_main
from parrot_moe.analysis import plot_expert_distribution, write_csv
from parrot_moe.diagnostics import LanguageRouting

matplotlib.use("Agg")
FULL_NAMES = ["English", "Chinese", "Portuguese", "Arabic", "Turkish", "Russian"]


@pytest.fixture()
def saved_figures(monkeypatch):
    """Every Figure saved while the test runs (the file is still written)."""
    figures = []
    original = Figure.savefig

    def record(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return figures


def test_the_shared_order_and_names():
    assert [language_label(code) for code in LANGUAGES] == FULL_NAMES
    assert ordered_languages(["ru", "xx", "en", "ar", "zh", "tr", "pt", "en"]) == [*LANGUAGES, "xx"]
    assert language_label("xx") == "xx" and set(LANGUAGE_NAMES) == set(LANGUAGES)


def test_expert_chart_orders_and_names_languages_and_labels_its_axes(saved_figures, tmp_path):
    shuffled = ["ru", "pt", "en", "tr", "zh", "ar"]
    routing = {lang: LanguageRouting(torch.softmax(torch.randn(3, 4), -1)) for lang in shuffled}
    plot_expert_distribution(routing, tmp_path / "experts.png")
    (axis,) = saved_figures[0].axes
    assert [t.get_text() for t in axis.get_xticklabels()] == FULL_NAMES
    assert axis.get_ylabel() == "mean routing probability (share of 1)"
    assert axis.get_xlabel() == "prompt language"
    write_csv(routing, tmp_path / "experts.csv")
    rows = (tmp_path / "experts.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == list(LANGUAGES)


def test_radar_names_languages_in_order_and_says_percent(saved_figures, tmp_path):
    series = {"MMMB": {"a": {"ru": 50.0, "en": 90.0, "zh": 70.0}, "b": {"tr": 40.0, "pt": 60.0, "ar": 55.0}}}
    plot_radar(series, tmp_path / "radar.png")
    (axis,) = saved_figures[0].axes
    assert [t.get_text() for t in axis.get_xticklabels()] == FULL_NAMES
    assert axis.get_ylabel() == "accuracy (%)"
    assert axis.get_ylim() == (0.0, 100.0)


def llava_data(tmp_path, image_name="shape.png"):
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"id": "q1", "lang": "en", "image": image_name,
                                 "conversations": [{"from": "human", "value": "<image>\nColour?"},
                                                   {"from": "gpt", "value": "red"}]}]))
    return data


def analysis_error(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        analysis_main(["--model-path", "unused", "--out", "unused", *argv])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_analysis_without_image_folder_says_which_flag_to_pass(tmp_path, capsys):
    err = analysis_error(capsys, "--data", str(llava_data(tmp_path)))
    assert "error: --image-folder is required" in err and "--image-folder FOLDER" in err
    assert "Traceback" not in err


def test_analysis_with_a_missing_image_folder(tmp_path, capsys):
    err = analysis_error(capsys, "--data", str(llava_data(tmp_path)), "--image-folder", str(tmp_path / "nope"))
    assert f"--image-folder {tmp_path / 'nope'}: no such folder" in err


def test_analysis_with_an_image_missing_from_the_folder(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "other.png")
    err = analysis_error(capsys, "--data", str(llava_data(tmp_path)), "--image-folder", str(tmp_path))
    assert "item 'q1' names image 'shape.png'" in err and "pass --image-folder" in err


def test_analysis_refuses_image_folder_with_tsvs(tmp_path, capsys):
    tsv = tmp_path / "MMMB_en.tsv"
    tsv.write_text("index\tquestion\n")
    err = analysis_error(capsys, "--data", str(tsv), "--image-folder", str(tmp_path))
    assert "--image-folder: VLMEvalKit TSVs carry their images inline" in err
