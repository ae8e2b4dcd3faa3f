"""Tiny files in the layout of each general benchmark (VLMEvalKit's TSVs), written by the tests."""

import base64
import csv
import io
from pathlib import Path

from PIL import Image


def image_b64(color) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


RED, BLUE = image_b64((200, 30, 30)), image_b64((30, 30, 200))

# name -> (columns, rows); every file has a base64 `image` column or names another row's index
LAYOUTS = {
    "MME": (
        ["index", "image", "question", "answer", "category", "image_path"],
        [
            [0, RED, "Is the picture red? Please answer yes or no.", "Yes", "color", "color/1.png"],
            [1, "0", "Is the picture blue? Please answer yes or no.", "No", "color", "color/1.png"],
            [2, BLUE, "Is there text? Please answer yes or no.", "No", "OCR", "ocr/2.png"],
            [3, "2", "Is the picture blank? Please answer yes or no.", "Yes", "OCR", "ocr/2.png"],
            [4, RED, "Is 2+2=4 shown? Please answer yes or no.", "No", "numerical_calculation", "num/4.png"],
            [5, "4", "Is 1+1=2 shown? Please answer yes or no.", "Yes", "numerical_calculation", "num/4.png"],
        ],
    ),
    "MMStar": (
        ["index", "question", "image", "answer", "category", "l2_category", "A", "B", "C", "D"],
        [
            [0, "What colour is it?", RED, "A", "coarse perception", "image style", "red", "blue", "green", "black"],
            [1, "What colour is it?", BLUE, "B", "math", "numeric", "red", "blue", "green", "black"],
            [2, "Which shape?", RED, "C", "math", "geometry", "circle", "line", "square", "star"],
        ],
    ),
    "SEEDBench_IMG": (
        ["index", "question", "A", "B", "C", "D", "answer", "category", "image"],
        [
            [0, "What is the main colour?", "red", "blue", "green", "white", "A", "Scene Understanding", RED],
            [1, "How many objects?", "one", "two", "three", "none", "D", "Instances Counting", BLUE],
        ],
    ),
    "ScienceQA_TEST": (
        ["index", "question", "hint", "A", "B", "C", "D", "E", "answer", "category", "split", "image"],
        [
            [0, "Which is a mammal?", "Look at the animals.", "cat", "trout", "frog", "crow", "ant", "A", "biology", "test", RED],
            [1, "Which is hot?", "", "ice", "fire", "", "", "", "B", "physics", "test", BLUE],
        ],
    ),
    "RealWorldQA": (
        ["index", "question", "A", "B", "C", "answer", "image"],
        [
            [0, "Is the road clear?", "yes", "no", "unsure", "A", RED],
            [1, "How many lanes?", "one", "two", "three", "B", BLUE],
        ],
    ),
    "MMBench_dev_cn": (
        ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category", "split", "image"],
        [
            [0, "图中是什么颜色？", "", "红色", "蓝色", "绿色", "黑色", "A", "color", "perception", "dev", RED],
            [1000000, "图中是什么颜色？", "", "蓝色", "绿色", "黑色", "红色", "D", "color", "perception", "dev", "0"],
        ],
    ),
}


def write_layout(folder: Path, name: str) -> Path:
    columns, rows = LAYOUTS[name]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.tsv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    return path
