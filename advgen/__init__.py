"""advgen: regenerate, publish and verify the datasets of "Adversarial Examples are not Bugs, they are
Features" (Ilyas et al., NeurIPS 2019).

Stages, one home each; data flows one way: recipe -> sources -> models -> attacks -> writers -> (cards, publish)
-> verify -> report.

    recipe.py     every recipe schema (train, generate, verify, reproduce) and the strict YAML loader
    sources.py    labelled uint8 images in: HF datasets, scikit-learn digits, ImageFolder, synthetic
    models/       architectures, checkpoints (safetensors + JSON), .pt import, fast attack copies, training
    attacks/      descent loop, PGD, representation inversion
    writers/      the output format: layout, shards + parquet, manifest, reader
    generate.py   `advgen generate` / `accelerate launch advgen/generate.py`: one dataset from a recipe
    verify.py     `advgen verify`: train fresh models on generated sets, evaluate on the original test set
    report.py     reports: README block, verification and pipeline reports, figures
    cards.py      the dataset card;  publish.py: push outputs to the Hub
    reproduce.py  `advgen reproduce`: the whole pipeline (Table 1 / Figure 2b) with a stage cache
    gaussian.py   Section 4's Gaussian model;  transfer.py: Section 3.3's transferability (Figure 3)
    tools/        `advgen bench`, `advgen bench-e2e`
    cli.py        the `advgen` command; errors.py: the one-line errors it prints (exit 2)
"""

__version__ = "0.1.0"
