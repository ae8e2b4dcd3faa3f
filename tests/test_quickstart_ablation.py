"""The language-share ablation (`python -m playground.quickstart.ablation`): the grid it trains, the
Table-1 stage-2 file and the English-only stage-1 file it builds, and its reports."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest

from playground.quickstart.ablation import SHARES, TABLE1_MIX, main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation")
    argv = ["--fast", "--out", str(out), "--seeds", "0,1", "--shares", "none,table1",
            "--threads", "1", "--stage1-english-only", "true", "--num-stage2", "200"]
    assert main(argv) == 0
    return out


def test_every_cell_is_trained_evaluated_and_reported(grid):
    with (grid / "ablation_shares.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    cells = {(r["projector"], r["share"], r["seed"]) for r in rows}
    assert cells == {(p, s, str(seed)) for p in ("mlp2x_gelu", "parrot_moe") for s in ("none", "table1") for seed in (0, 1)}
    assert Counter(r["language"] for r in rows) == {lang: 8 for lang in ("en", "zh", "pt", "ar", "tr", "ru")}
    for cell in cells:
        assert (grid / "cells" / f"{cell[0]}_{cell[1]}_seed{cell[2]}" / "checkpoint" / "config.json").is_file()
    report = (grid / "ablation_shares.md").read_text(encoding="utf-8")
    assert report.count("### parrot_moe") == 4 and "routing entropy / ln E" in report
    assert (grid / "ablation_shares.png").read_bytes()[:8] == PNG_MAGIC


def test_the_table1_file_has_the_papers_shares_and_stage1_can_be_english(grid):
    data = grid / "work" / "data"
    items = json.loads((data / SHARES["table1"][1]).read_text(encoding="utf-8"))
    counts = Counter(item["lang"] for item in items)
    for lang, share in TABLE1_MIX.items():
        assert abs(counts[lang] - share * len(items)) <= 1, (lang, counts)
    english = json.loads((data / "stage1_captions_en_only.json").read_text(encoding="utf-8"))
    mixed = json.loads((data / "stage1_captions.json").read_text(encoding="utf-8"))
    assert {item["lang"] for item in english} == {"en"} and len(english) == len(mixed)
    assert [item["image"] for item in english] == [item["image"] for item in mixed]
    trained = json.loads((grid / "work" / "stage1_ordered.json").read_text(encoding="utf-8"))
    assert {item["lang"] for item in trained} == {"en"}  # --stage1-english-only reached stage 1


def test_bad_lists_are_refused_naming_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--shares", "none,half"])
    assert exit_info.value.code == 2 and "none, table1, default" in capsys.readouterr().err


def test_replot_redraws_the_chart_from_the_csv_alone(grid, tmp_path):
    (tmp_path / "ablation_shares.csv").write_bytes((grid / "ablation_shares.csv").read_bytes())
    assert main(["--replot", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "ablation_shares.png").read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ablation_shares.csv", "ablation_shares.png"]  # trained nothing


@pytest.mark.parametrize("content, message", [(None, "no such file"), ("a,b\n1,2\n", "expected the columns")])
def test_replot_refuses_a_folder_without_an_ablation_csv(tmp_path, capsys, content, message):
    if content is not None:
        (tmp_path / "ablation_shares.csv").write_text(content, encoding="utf-8")
    assert main(["--replot", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(tmp_path / "ablation_shares.csv") in err
    assert not (tmp_path / "ablation_shares.png").exists()
