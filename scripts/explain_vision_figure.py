"""Combines `suite explain vision` outputs into one picture for the README: per image, the original (scaled to
the model's input size, nearest neighbour) above its heatmap overlay, with the true class (the image's folder), the predicted class and its probability.

usage: python scripts/explain_vision_figure.py EXPLAIN_DIR OUT.png
(EXPLAIN_DIR holds explain.json, as `suite explain vision --out EXPLAIN_DIR` writes it.)
"""
import json
import sys

from PIL import Image, ImageDraw

explain_dir, out = sys.argv[1], sys.argv[2]
index = json.load(open(f"{explain_dir}/explain.json"))
tiles = []
for entry in index["images"]:
    overlay = Image.open(entry["overlay"]).convert("RGB")
    original = Image.open(entry["image"]).convert("RGB").resize(overlay.size, Image.NEAREST)
    # The folder an image sits in is its true class in suite's data layout (`<split>/<class>/<file>`).
    true = entry["image"].rstrip("/").split("/")[-2] if "/" in entry["image"] else "?"
    text = f"{true} -> {entry['predicted_label']} {100 * entry['predicted_probability']:.0f}%"
    tiles.append((original, overlay, text))
w, h = tiles[0][1].size
pad, caption = 4, 16
sheet = Image.new("RGB", (len(tiles) * (w + pad) + pad, 2 * (h + pad) + caption + pad), "white")
draw = ImageDraw.Draw(sheet)
for i, (original, overlay, text) in enumerate(tiles):
    x = pad + i * (w + pad)
    sheet.paste(original, (x, pad))
    sheet.paste(overlay, (x, 2 * pad + h))
    draw.text((x + 2, 3 * pad + 2 * h - 2), text, fill="black")
sheet.save(out, optimize=True)
