"""Write the Decompose tab's example images from the Debian packages (run once; its output is shipped).

    python weights/examples/make_examples.py

Emoji: four Noto Color Emoji glyphs (fonts-noto-color-emoji, OFL-1.1), at 128x128 on white, so
the page shows them resized to the model as any upload is. Fashion: four images of the
Fashion-MNIST *test* set (dataset-fashion-mnist, MIT), which no shipped model was trained on,
padded with black to 32x32 as the training images are.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
from fontTools.ttLib import TTFont
from PIL import Image

OUT = Path(__file__).resolve().parent
EMOJI_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
FASHION_TEST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
EMOJI = {"emoji_grinning_face": 0x1F600, "emoji_rocket": 0x1F680, "emoji_sunflower": 0x1F33B, "emoji_octopus": 0x1F419}
FASHION = {"fashion_ankle_boot": 0, "fashion_pullover": 1, "fashion_trouser": 2, "fashion_shirt": 4}  # test-set indices


def emoji(codepoint: int, side: int = 128) -> Image.Image:
    font = TTFont(EMOJI_FONT, lazy=True)
    glyph = font.getBestCmap()[codepoint]
    rgba = Image.open(io.BytesIO(font["CBDT"].strikeData[0][glyph].imageData)).convert("RGBA")
    square = max(rgba.size)
    canvas = Image.new("RGBA", (square, square), (255, 255, 255, 255))
    canvas.alpha_composite(rgba, ((square - rgba.width) // 2, (square - rgba.height) // 2))
    return canvas.convert("RGB").resize((side, side), Image.Resampling.LANCZOS)


def fashion(index: int) -> Image.Image:
    with gzip.open(FASHION_TEST, "rb") as f:
        data = f.read()
    count, h, w = (int.from_bytes(data[i : i + 4], "big") for i in (4, 8, 12))
    x = np.frombuffer(data, np.uint8, offset=16).reshape(count, h, w)[index]
    return Image.fromarray(np.pad(x, ((2, 2), (2, 2))), "L").convert("RGB")


if __name__ == "__main__":
    for name, cp in EMOJI.items():
        emoji(cp).save(OUT / f"{name}.png", optimize=True)
    for name, index in FASHION.items():
        fashion(index).save(OUT / f"{name}.png", optimize=True)
    print(f"wrote {len(EMOJI) + len(FASHION)} examples to {OUT}")
