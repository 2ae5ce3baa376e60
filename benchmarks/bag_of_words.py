"""Sparse word counts: a synthetic two-domain sentiment corpus, since no bag-of-words data set is on this
machine (the classic text benchmark, Amazon reviews, needs a download).

Each document is ``Poisson(40)`` words drawn from a mixture over a 5,000-word vocabulary: 85% a general
topic, 4% a sentiment topic shared by both domains, 11% a sentiment topic of its own domain ("books" or
"kitchen"), each topic a ``Dirichlet(0.05)`` draw (few words carry most of a topic's mass, as in text).
1,500 documents a domain, each of either class with probability 1/2; the folder holds the raw counts,
as a user would give them. Every single-input adaptation method runs through ``crossfuse run`` with
default settings, seeds 0-2 (label-free selection), beside logistic regressions on the same split: on
raw counts, on tf-idf, and on standardised counts.

    python benchmarks/bag_of_words.py --seeds 0 1 2 --jobs 2 --out runs/bag-of-words
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from two_moons import crossfuse_run, percent, percent_cells  # noqa: E402

VOCABULARY, DOCUMENTS, LENGTH = 5000, 1500, 40
MIXTURE = (0.85, 0.04, 0.11)  # general, shared sentiment, the domain's own sentiment


def write_corpus(root: Path, seed: int = 0) -> Path:
    """The folder: ``modalities/words.npy`` (counts), ``labels.npy`` (0 negative, 1 positive),
    ``domains.npy`` (``books`` then ``kitchen``)."""
    rng = np.random.default_rng(seed)
    topics = rng.dirichlet(np.full(VOCABULARY, 0.05), size=7)
    general, shared, own = topics[0], topics[1:3], topics[3:].reshape(2, 2, VOCABULARY)
    counts, labels = [], []
    for domain in range(2):
        classes = rng.integers(0, 2, DOCUMENTS)
        for label in classes:
            mix = MIXTURE[0] * general + MIXTURE[1] * shared[label] + MIXTURE[2] * own[domain, label]
            counts.append(rng.multinomial(rng.poisson(LENGTH), mix / mix.sum()))
        labels.append(classes)
    (root / "modalities").mkdir(parents=True, exist_ok=True)
    np.save(root / "modalities" / "words.npy", np.asarray(counts, dtype=np.float32))
    np.save(root / "labels.npy", np.concatenate(labels))
    np.save(root / "domains.npy", np.repeat(["books", "kitchen"], DOCUMENTS))
    return root


def logistic_regressions(root: Path, seed: int) -> dict[str, float]:
    """Target accuracy of three logistic regressions on the run's own split."""
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from crossfuse.data.dataset import Task, split_task
    from crossfuse.data.folder import load_folder

    data = load_folder(root)
    split = split_task(data, Task(("books",), ("kitchen",)), seed)
    x, y = data.modalities["words"], data.labels
    models = {
        "raw counts": LogisticRegression(max_iter=3000),
        "tf-idf": make_pipeline(TfidfTransformer(), LogisticRegression(max_iter=3000)),
        "standardised": make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)),
    }
    return {
        name: float(
            model.fit(x[split.source_train], y[split.source_train]).score(
                x[split.target_test], y[split.target_test]
            )
        )
        for name, model in models.items()
    }


def main() -> None:
    from adaptation_suite import SINGLE  # here: adaptation_suite imports normalization, which imports this

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=SINGLE)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bag-of-words"))
    args = parser.parse_args()
    folder = write_corpus(args.out / "data")
    baselines = [logistic_regressions(folder, seed) for seed in args.seeds]
    jobs = [(method, seed) for method in args.methods for seed in args.seeds]

    def one(job):
        method, seed = job
        run_dir = args.out / f"{method}-seed{seed}"
        return job, crossfuse_run(folder, "books", "kitchen", method, seed, run_dir)

    with ThreadPoolExecutor(args.jobs) as pool:  # each run is its own process
        results = list(pool.map(one, jobs))
    print(f"synthetic bag of words, books -> kitchen; seeds {args.seeds}; target accuracy (%), mean ± std")
    for name in baselines[0]:
        print(f"logistic regression on {name}: {percent([b[name] for b in baselines])}")
    print("| method | target accuracy | oracle epoch | source-val accuracy |")
    print("| --- | --- | --- | --- |")
    for method in args.methods:
        runs = [m for (name, _), m in results if name == method]
        keys = ("target_accuracy", "oracle_target_accuracy", "source_val_accuracy")
        print(f"| {method} | " + " | ".join(percent_cells(runs, keys)) + " |")


if __name__ == "__main__":
    main()
