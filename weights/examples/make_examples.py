"""Write the Decompose tab's example images from the Debian packages (run once; its output is shipped).

    PYTHONPATH=. python weights/examples/make_examples.py

Emoji: four Noto Color Emoji glyphs (fonts-noto-color-emoji, OFL-1.1), at 128x128 on white, so
the page shows them resized to the model as any upload is. Fashion: four images of the
Fashion-MNIST *test* set (dataset-fashion-mnist, MIT), which no shipped model was trained on,
padded with black to 32x32 as the training images are.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from msgen.datasets import emoji_image, fashion_test_images

OUT = Path(__file__).resolve().parent
EMOJI = {"emoji_grinning_face": 0x1F600, "emoji_rocket": 0x1F680, "emoji_sunflower": 0x1F33B, "emoji_octopus": 0x1F419}
FASHION = {"fashion_ankle_boot": 0, "fashion_pullover": 1, "fashion_trouser": 2, "fashion_shirt": 4}  # test-set indices


if __name__ == "__main__":
    for name, cp in EMOJI.items():
        emoji_image(cp, 128).save(OUT / f"{name}.png", optimize=True)
    test_set = fashion_test_images()
    for name, index in FASHION.items():
        Image.fromarray(test_set[index], "L").convert("RGB").save(OUT / f"{name}.png", optimize=True)
    print(f"wrote {len(EMOJI) + len(FASHION)} examples to {OUT}")
