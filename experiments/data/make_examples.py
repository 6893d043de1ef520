"""Write the small example data sets the README and the experiments/ grids use:

    python experiments/data/make_examples.py        # rewrites the files beside this script

- waves.npz: 600 sequences of 40 steps x 3 noisy features, 3 classes by the frequency of a
  sine hidden in the first feature (x float32 (600, 40, 3), y int64 (600,));
- waves_TRAIN.ts / waves_TEST.ts: 300 + 150 such sequences (2 features) in the UEA/UCR
  archive's .ts format, class labels "slow", "medium", "fast";
- grammar.txt: about 120 kB of sentences from a small random grammar, for the text task.

Deterministic (fixed seeds): running it again writes the same bytes.
"""

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CLASSES = ("slow", "medium", "fast")


def waves(n: int, T: int, features: int, rng: np.random.Generator):
    y = rng.integers(0, 3, n)
    t = np.arange(T)
    freq = np.array([0.05, 0.1, 0.2])[y]
    phase = rng.uniform(0, 2 * np.pi, n)
    x = rng.normal(0, 0.6, (n, T, features))
    x[:, :, 0] += np.sin(2 * np.pi * freq[:, None] * t[None, :] + phase[:, None])
    return x.astype(np.float32), y.astype(np.int64)


def write_ts(path: Path, x: np.ndarray, y: np.ndarray, name: str) -> None:
    n, T, D = x.shape
    lines = [
        f"# {name}: synthetic noisy sines, 3 classes by frequency (rnnfast example data)",
        f"@problemName {name}",
        "@timeStamps false",
        "@missing false",
        f"@univariate {'true' if D == 1 else 'false'}",
        f"@dimensions {D}",
        "@equalLength true",
        f"@seriesLength {T}",
        f"@classLabel true {' '.join(CLASSES)}",
        "@data",
    ]
    for k in range(n):
        dims = [",".join(f"{v:.4f}" for v in x[k, :, d]) for d in range(D)]
        lines.append(":".join(dims) + ":" + CLASSES[y[k]])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def grammar_text(rng: np.random.Generator, sentences: int) -> str:
    subjects = ["the cat", "a dog", "the old man", "my sister", "the river", "a small bird",
                "the teacher", "our neighbour", "the wind", "a stranger"]  # fmt: skip
    verbs = ["sees", "follows", "remembers", "carries", "finds", "watches", "calls", "hears"]
    objects = ["the house", "a red ball", "the garden", "an open door", "the long road",
               "a quiet song", "the morning light", "a letter"]  # fmt: skip
    tails = ["", " today", " again", " by the sea", " before dinner", " in the rain",
             " without a word"]  # fmt: skip
    out = []
    for _ in range(sentences):
        s = f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}{rng.choice(tails)}"
        if rng.random() < 0.3:
            s += f", and {rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}"
        out.append(s[0].upper() + s[1:] + ("." if rng.random() < 0.85 else "?"))
    return " ".join(out) + "\n"


def main() -> None:
    rng = np.random.default_rng(2026)
    x, y = waves(600, 40, 3, rng)
    np.savez_compressed(HERE / "waves.npz", x=x, y=y)
    xt, yt = waves(450, 30, 2, rng)
    write_ts(HERE / "waves_TRAIN.ts", xt[:300], yt[:300], "Waves")
    write_ts(HERE / "waves_TEST.ts", xt[300:], yt[300:], "Waves")
    (HERE / "grammar.txt").write_text(grammar_text(rng, 2600), encoding="utf-8")


if __name__ == "__main__":
    main()
