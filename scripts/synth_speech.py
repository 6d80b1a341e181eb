#!/usr/bin/env python3
"""Synthetic multilingual speech for suite's speech tests and demo: short sentences from a fixed vocabulary
(numbers, colours, objects) per language, spoken by espeak-ng with varied voices, speeds and pitches.

    $SUITE_PYTHON scripts/synth_speech.py --out DIR [--per-lang 200] [--heldout-per-lang 50]
        [--langs en,de,fr,es] [--seed 0] [--espeak PATH] [--jobs 2]

Writes DIR/wav/<lang>/<split>_<lang>_<nnnn>.wav (16-bit mono, espeak-ng's 22,050 Hz), DIR/train.jsonl and
DIR/heldout.jsonl ({"audio", "text", "language", "voice", "speed", "pitch", "gap"} per line; audio relative to
DIR). Train and held-out sentences are disjoint. The output depends only on the arguments (one seeded
random.Random; espeak-ng is deterministic), so two runs write identical files.

espeak-ng comes from the Debian packages that scripts/fetch_assets.sh unpacks under $SUITE_CACHE/assets/
(espeak-ng, espeak-ng-data, espeak-lib*), run in place through LD_LIBRARY_PATH and ESPEAK_DATA_PATH; an
espeak-ng on PATH is used when those are absent. Standard library only.
"""

import argparse
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import wave
from concurrent.futures import ThreadPoolExecutor

# Per language: espeak-ng voice, numbers 2-9 (so nouns are always plural), colours, objects, and sentence
# templates. Colours agree with the object's gender where the language needs it: (masculine, feminine) forms.
LANGS = {
    "en": {
        "voice": "en-us",
        "numbers": ["two", "three", "four", "five", "six", "seven", "eight", "nine"],
        "colours": {c: (c, c) for c in ["red", "blue", "green", "yellow", "black", "white"]},
        "objects": [(o, "m") for o in ["apples", "balls", "cars", "dogs", "cats", "books", "chairs", "flowers"]],
        "templates": ["I see {n} {c} {o}.", "There are {n} {c} {o}.", "Give me {n} {c} {o}."],
    },
    "de": {
        "voice": "de",
        "numbers": ["zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"],
        # Strong plural adjective ending without an article: -e for every gender.
        "colours": {c: (c + "e", c + "e") for c in ["rot", "blau", "grün", "gelb", "schwarz", "weiß"]},
        "objects": [(o, "m") for o in ["Äpfel", "Bälle", "Autos", "Hunde", "Katzen", "Bücher", "Stühle", "Blumen"]],
        "templates": ["Ich sehe {n} {c} {o}.", "Da sind {n} {c} {o}.", "Gib mir {n} {c} {o}."],
    },
    "fr": {
        "voice": "fr",
        "numbers": ["deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"],
        "colours": {
            "rouge": ("rouges", "rouges"),
            "bleu": ("bleus", "bleues"),
            "vert": ("verts", "vertes"),
            "jaune": ("jaunes", "jaunes"),
            "noir": ("noirs", "noires"),
            "blanc": ("blancs", "blanches"),
        },
        "objects": [
            ("pommes", "f"), ("balles", "f"), ("voitures", "f"), ("chiens", "m"),
            ("chats", "m"), ("livres", "m"), ("chaises", "f"), ("fleurs", "f"),
        ],
        "templates": ["Je vois {n} {o} {c}.", "Il y a {n} {o} {c}.", "Donne-moi {n} {o} {c}."],
    },
    "es": {
        "voice": "es",
        "numbers": ["dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"],
        "colours": {
            "rojo": ("rojos", "rojas"),
            "azul": ("azules", "azules"),
            "verde": ("verdes", "verdes"),
            "amarillo": ("amarillos", "amarillas"),
            "negro": ("negros", "negras"),
            "blanco": ("blancos", "blancas"),
        },
        "objects": [
            ("manzanas", "f"), ("pelotas", "f"), ("coches", "m"), ("perros", "m"),
            ("gatos", "m"), ("libros", "m"), ("sillas", "f"), ("flores", "f"),
        ],
        "templates": ["Veo {n} {o} {c}.", "Hay {n} {o} {c}.", "Dame {n} {o} {c}."],
    },
}

# espeak-ng voice variants (espeak-ng-data/voices/!v): male, female and a few character voices.
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "croak"]


def sentences(lang):
    """Every sentence of the language's grammar, in a fixed order."""
    spec = LANGS[lang]
    out = []
    for template in spec["templates"]:
        for n in spec["numbers"]:
            for colour_forms in spec["colours"].values():
                for obj, gender in spec["objects"]:
                    colour = colour_forms[0] if gender == "m" else colour_forms[1]
                    out.append(template.format(n=n, c=colour, o=obj))
    return out


def find_espeak(explicit):
    """(command, environment) for running espeak-ng from the unpacked assets, or from PATH."""
    env = dict(os.environ)
    if explicit:
        return explicit, env
    cache = os.environ.get("SUITE_CACHE") or os.path.expanduser("~/.cache/suite")
    assets = os.path.join(cache, "assets")
    binary = os.path.join(assets, "espeak-ng", "usr", "bin", "espeak-ng")
    data = glob.glob(os.path.join(assets, "espeak-ng-data", "usr", "lib", "*", "espeak-ng-data"))
    if os.path.isfile(binary) and data:
        libs = sorted(glob.glob(os.path.join(assets, "espeak-*", "usr", "lib", "*")))
        libs += sorted(glob.glob(os.path.join(assets, "espeak-*", "usr", "lib", "*", "pulseaudio")))
        libs = [d for d in libs if os.path.isdir(d) and not d.endswith("espeak-ng-data")]
        env["LD_LIBRARY_PATH"] = ":".join(libs + [env.get("LD_LIBRARY_PATH", "")]).rstrip(":")
        # espeak-ng looks for $ESPEAK_DATA_PATH/espeak-ng-data.
        env["ESPEAK_DATA_PATH"] = os.path.dirname(data[0])
        return binary, env
    system = shutil.which("espeak-ng")
    if system:
        return system, env
    sys.exit(
        f"error: espeak-ng not found: expected {binary} (run scripts/fetch_assets.sh speech) "
        "or an espeak-ng on PATH, or pass --espeak"
    )


def synthesize(espeak, env, item, out_dir):
    path = os.path.join(out_dir, item["audio"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cmd = [
        espeak, "-v", f"{item['voice']}", "-s", str(item["speed"]), "-p", str(item["pitch"]),
        "-g", str(item["gap"]), "-w", path, item["text"],
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0 or not os.path.isfile(path):
        raise RuntimeError(f"espeak-ng failed for {item['audio']} ({' '.join(cmd)}): {result.stderr.strip()}")
    with wave.open(path, "rb") as w:
        if w.getnframes() == 0:
            raise RuntimeError(f"espeak-ng wrote no audio for {item['audio']}")
        item["duration_s"] = round(w.getnframes() / w.getframerate(), 3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--per-lang", type=int, default=200, help="training utterances per language")
    ap.add_argument("--heldout-per-lang", type=int, default=None, help="held-out utterances (default per-lang/4)")
    ap.add_argument("--langs", default="en,de,fr,es")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--espeak", default=None, help="espeak-ng binary (default: the unpacked assets, then PATH)")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()

    langs = [l.strip() for l in args.langs.split(",") if l.strip()]
    unknown = [l for l in langs if l not in LANGS]
    if unknown:
        sys.exit(f"error: --langs: unknown language(s) {', '.join(unknown)}; available: {', '.join(LANGS)}")
    heldout = args.heldout_per_lang if args.heldout_per_lang is not None else max(1, args.per_lang // 4)
    if args.per_lang < 1 or heldout < 0:
        sys.exit("error: --per-lang must be at least 1 and --heldout-per-lang at least 0")
    espeak, env = find_espeak(args.espeak)

    rng = random.Random(args.seed)
    splits = {"train": [], "heldout": []}
    for lang in langs:
        pool = sentences(lang)
        if args.per_lang + heldout > len(pool):
            sys.exit(f"error: {lang}: {args.per_lang} + {heldout} utterances requested, the grammar has {len(pool)}")
        rng.shuffle(pool)
        chosen = {"train": pool[: args.per_lang], "heldout": pool[args.per_lang : args.per_lang + heldout]}
        for split, texts in chosen.items():
            for i, text in enumerate(texts):
                splits[split].append({
                    "audio": f"wav/{lang}/{split}_{lang}_{i:04d}.wav",
                    "text": text,
                    "language": lang,
                    "voice": f"{LANGS[lang]['voice']}+{rng.choice(VARIANTS)}",
                    "speed": rng.randint(130, 200),
                    "pitch": rng.randint(25, 75),
                    "gap": rng.randint(0, 4),
                })

    os.makedirs(args.out, exist_ok=True)
    items = splits["train"] + splits["heldout"]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(lambda it: synthesize(espeak, env, it, args.out), items))
    for split, rows in splits.items():
        with open(os.path.join(args.out, f"{split}.jsonl"), "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    total = sum(it["duration_s"] for it in items)
    print(
        f"wrote {len(splits['train'])} train and {len(splits['heldout'])} held-out utterances "
        f"({total / 60:.1f} min) in {len(langs)} languages to {args.out}"
    )


if __name__ == "__main__":
    main()
