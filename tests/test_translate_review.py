"""The semi-automatic part: review sheets, reviewers' corrections and rejections imported."""

import csv
import json
import os

import pytest
from translation_server import easyvqa_items, read_json, run_translate, write_items

from llava.data.translate.cli import apply_review_main

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def reviewed_run(translation_server, tmp_path):
    source = tmp_path / "evqa.json"
    write_items(source, easyvqa_items(6))
    out = tmp_path / "run"
    assert run_translate(translation_server, source, out, "--review-sample", "3", "--seed", "1") == 0
    return out


def read_sheet(path):
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def write_sheet(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_review_sheets_show_source_and_translation_for_the_sample(reviewed_run):
    rows = read_sheet(reviewed_run / "review" / "evqa_zh.csv")
    assert len({row["item"] for row in rows}) == 3
    final = {row["id"]: row for row in read_json(reviewed_run / "evqa_zh.json")}
    for row in rows:
        assert final[row["id"]]["conversations"][int(row["turn"])]["value"] == row["translation"]
    page = (reviewed_run / "review" / "evqa_zh.html").read_text()
    embedded = page.split('<script type="application/json" id="data">')[1].split("</script>")[0]
    assert "<" not in embedded and json.loads(embedded) == [{**row, "item": int(row["item"]), "turn": int(row["turn"])}
                                                           for row in rows]
    assert "Export corrections (CSV)" in page


def test_apply_review_imports_corrections_and_rejections_and_later_runs_keep_them(
        reviewed_run, translation_server, capsys):
    sheet = reviewed_run / "review" / "evqa_zh.csv"
    rows = read_sheet(sheet)
    corrected, rejected = rows[0], next(row for row in rows if row["item"] != rows[0]["item"])
    corrected["correction"] = corrected["translation"].replace("<image>\n", "<image>\n【已校对】")
    rejected["reject"], rejected["note"] = "1", "wrong colour word"
    write_sheet(sheet, rows)
    assert apply_review_main([str(sheet)]) == 0
    assert "zh: 3 items reviewed, 1 corrected, 1 rejected; reviewers accepted 66.7%" in capsys.readouterr().out

    def check_final():
        final = {row["id"]: row for row in read_json(reviewed_run / "evqa_zh.json")}
        assert rejected["id"] not in final and len(final) == 5
        assert final[corrected["id"]]["conversations"][int(corrected["turn"])]["value"] == corrected["correction"]
        rejects = [json.loads(line) for line in (reviewed_run / "rejects.jsonl").read_text().splitlines()]
        assert [(r["id"], r["reason"], r["detail"]) for r in rejects] == [(rejected["id"], "review", "wrong colour word")]

    check_final()
    source = json.loads((reviewed_run / "run.json").read_text())["input"]
    assert run_translate(translation_server, source, reviewed_run) == 0
    check_final()


def test_a_correction_that_moves_image_is_refused(reviewed_run, capsys):
    sheet = reviewed_run / "review" / "evqa_zh.csv"
    rows = read_sheet(sheet)
    first = next(row for row in rows if row["source"].startswith("<image>"))
    first["correction"] = first["translation"].replace("<image>\n", "") + "\n<image>"
    write_sheet(sheet, rows)
    with pytest.raises(SystemExit) as stop:
        apply_review_main([str(sheet)])
    assert stop.value.code == 2 and "moves, adds or drops <image>" in capsys.readouterr().err


def test_a_sheet_outside_the_run_needs_out(reviewed_run, tmp_path, capsys):
    moved = tmp_path / "downloads" / "sheet.csv"
    moved.parent.mkdir()
    moved.write_bytes((reviewed_run / "review" / "evqa_pt.csv").read_bytes())
    with pytest.raises(SystemExit):
        apply_review_main([str(moved)])
    assert "pass --out DIR" in capsys.readouterr().err
    assert apply_review_main([str(moved), "--out", str(reviewed_run)]) == 0


@pytest.mark.slow
def test_the_html_sheet_exports_what_the_reviewer_typed(reviewed_run, tmp_path, capsys):
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: install Debian's browser with `apt-get install -y chromium`"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        page = browser.new_page()
        page.goto((reviewed_run / "review" / "evqa_pt.html").as_uri())
        page.locator("textarea").nth(1).fill("Corrigido pelo revisor.")
        page.locator("input[type=checkbox]").last.check()
        with page.expect_download() as download:
            page.click("#export")
        exported = tmp_path / "exported.csv"
        download.value.save_as(exported)
        browser.close()
    rows = read_sheet(exported)
    assert rows[1]["correction"] == "Corrigido pelo revisor." and rows[-1]["reject"] == "1"
    assert apply_review_main([str(exported), "--out", str(reviewed_run)]) == 0
    assert "pt: 3 items reviewed, 1 corrected, 1 rejected" in capsys.readouterr().out
    final = {row["id"]: row for row in read_json(reviewed_run / "evqa_pt.json")}
    assert final[rows[1]["id"]]["conversations"][int(rows[1]["turn"])]["value"] == "Corrigido pelo revisor."
    assert rows[-1]["id"] not in final
