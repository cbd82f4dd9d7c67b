"""Export scikit-learn's bundled handwritten digits as an image folder in torchvision's ImageFolder layout.

Nothing downloads: the 1,797 8x8 grey-level scans (UCI's optical recognition of handwritten
digits, as scikit-learn ships them) are written as PNG files, ``<out>/<digit>/<index>.png``, with
their 17 grey levels (0-16) spread over 0-255. The images job (jobs/images.yaml) reads the
folder as any user's folder would be read; the digits task reads the same scans as arrays, so
the two can be compared. Deterministic:

    python jobs/data/export_images.py            # writes jobs/data/digits_images/
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def export(out: Path) -> int:
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    for i, (pixels, label) in enumerate(zip(data.images, data.target, strict=True)):
        folder = out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(pixels * 255 / 16).astype(np.uint8), mode="L").save(folder / f"{i:04d}.png")
    return len(data.target)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "digits_images", help="the folder to write (default: jobs/data/digits_images)")
    args = parser.parse_args()
    print(f"{args.out}: {export(args.out)} PNG images in 10 class folders")
