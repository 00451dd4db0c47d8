"""What to run: the data sets, the benchmark profiles, the method names and the --plan cost model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xlc.config import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT.parent / "shared" / "data"
SELECTORS = ("default", "balanced", "throttling", "thresholded", "pool-prior")  # the self-learning methods
METHODS = ("zero-shot", "default", "balanced", "throttling", "thresholded", "pool-prior", "control", "logreg")
PLUGIN_SELECTORS = {"pool-prior": "prior"}  # method -> selector of the xlc-classprior plugin
POOL_PRIOR_OPTIONS = {"proportions": "pool", "per_lang": True}  # pool-prior's options besides kt
BOOTSTRAP_RESAMPLES = 2000
COMPARISONS = (("default", "zero-shot"), ("default", "control"), ("default", "balanced"),
               ("balanced", "zero-shot"), ("balanced", "control"), ("pool-prior", "zero-shot"),
               ("pool-prior", "control"), ("pool-prior", "balanced"))

# Wall-clock cost model for --plan, measured with multilingual-e5-small on 2 CPU cores
# (see README "Reproducing the paper"); other machines and models differ.
COSTS = {"train_ms_per_token": 1.9, "score_ms_per_token": 0.5, "round_s": 14.0, "run_s": 12.0,
         "test_pass_s": 3.0, "logreg_s": 30.0}


@dataclass(frozen=True)
class DataSpec:
    """One data set of the comparison: where it is and how big a slice of it to use."""

    name: str
    title: str
    kt: int                      # balanced: texts per class per round
    train: int | None            # English training texts (None = all)
    pool: int | None             # unlabeled texts per target language
    dev: int | None              # dev texts per target language
    test: int | None             # test texts per target language
    langs: tuple[str, ...] = ()  # target languages (empty = all in the file)


@dataclass(frozen=True)
class Profile:
    """A benchmark configuration: the data slices and the training protocol."""

    name: str
    data: tuple[DataSpec, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    model: str = DEFAULTS.model
    epochs: int = 2
    batch_size: int = DEFAULTS.batch_size
    lr: float = DEFAULTS.lr
    head_lr: float = DEFAULTS.head_lr
    max_rounds: int = 2
    patience: int = DEFAULTS.patience
    max_length_cap: int = DEFAULTS.max_length  # the fitted max length (95th percentile of tokens) is capped here
    freeze_embeddings: bool = DEFAULTS.freeze_embeddings
    pooled: bool = True          # one run per selector for all target languages together
    test_every_round: bool = False
    threshold: float = 0.95
    selector_seeds: int | None = None  # throttling and thresholded run on this many leading seeds (None: all)
    logreg: bool = True
    threads: int | None = None   # CPU threads for training and scoring (None: all cores)
    methods: tuple[str, ...] = ("zero-shot", "balanced", "throttling", "thresholded", "pool-prior", "control",
                                "logreg")  # zero-shot and control come from "default" when it runs, else "balanced"
    select_epoch: bool = False   # choose each round's epochs on the target dev set (xlc's default)
    train_layers: int = DEFAULTS.train_layers  # train only the top layers on cached lower-layer features (0: all)
    note: str = ""


BUDGET = Profile(
    name="budget",
    data=(
        DataSpec("en2zh_sentiment", "English -> Chinese review polarity", kt=40,
                 train=160, pool=600, dev=100, test=300),
        DataSpec("xlm_t_sentiment", "English -> 7 languages, tweet sentiment", kt=25,
                 train=160, pool=80, dev=20, test=50),
        DataSpec("sib200_mldoc8", "English -> 7 languages, SIB-200 topics (MLDoc stand-in)", kt=12,
                 train=160, pool=80, dev=20, test=50),
    ),
    epochs=2, batch_size=16, head_lr=1e-2, max_rounds=1, selector_seeds=1,
    note="60 minutes on 2 CPU cores: small slices of each data set, pooled target languages, one "
         "self-learning round, frozen word embeddings, max length fitted to the data (capped at 64 "
         "tokens), warm start; throttling and thresholded on the first seed only.",
)

FULL = Profile(
    name="full",
    data=(
        DataSpec("en2zh_sentiment", "English -> Chinese review polarity", kt=100,
                 train=None, pool=None, dev=None, test=None),
        DataSpec("xlm_t_sentiment", "English -> 7 languages, tweet sentiment", kt=50,
                 train=None, pool=None, dev=None, test=None),
        DataSpec("sib200_mldoc8", "English -> 7 languages, SIB-200 topics (MLDoc stand-in)", kt=40,
                 train=None, pool=None, dev=None, test=None),
    ),
    epochs=3, max_rounds=10, patience=2, max_length_cap=256,
    freeze_embeddings=False, pooled=False, test_every_round=True, threshold=0.9,
    note="The paper's protocol: all data, one run per target language, trained embeddings, "
         "up to 10 rounds; for a machine with a GPU (hours on a CPU).",
)

POWERED = Profile(
    name="powered",
    data=(
        DataSpec("en2zh_sentiment", "English -> Chinese review polarity", kt=100,
                 train=1000, pool=2000, dev=None, test=None),
        DataSpec("xlm_t_sentiment", "English -> German, Spanish, Hindi, tweet sentiment", kt=100,
                 train=1000, pool=None, dev=None, test=None, langs=("de", "es", "hi")),
        DataSpec("sib200_mldoc8", "English -> 4 languages, SIB-200 topics (MLDoc stand-in)", kt=40,
                 train=None, pool=None, dev=None, test=None,
                 langs=("deu_Latn", "fra_Latn", "rus_Cyrl", "zho_Hans")),
    ),
    methods=("zero-shot", "default", "balanced", "control"),
    epochs=6, select_epoch=True, train_layers=2, max_rounds=2, patience=2, selector_seeds=1, logreg=False,
    note="Powered: English train 1,000 (SIB-200: all 701), pools of 1,839-2,000 texts per target language "
         "(SIB-200: the whole 701), whole dev and test splits (204-1,000 texts per language); round 0 "
         "trained to its best epoch on the target dev set; the top 2 encoder layers train on cached "
         "lower-layer features; 3 seeds.",
)

SMOKE = Profile(
    name="smoke",
    data=(DataSpec("demo", "bundled demo slice: English -> German, Chinese (SIB-200)", kt=2,
                   train=48, pool=24, dev=10, test=16, langs=("deu_Latn", "zho_Hans")),),
    seeds=(0, 1), model="tiny", epochs=1, batch_size=16, max_rounds=1, patience=5, selector_seeds=1,
    max_length_cap=32, threshold=0.01, threads=1,
    note="SMOKE: a tiny random encoder on a slice of the bundled demo. It checks the code path; "
         "its numbers mean nothing.",
)


@dataclass
class Bench:
    """Settings of one benchmark invocation."""

    profile: Profile
    data_dir: Path
    work: Path
    out: Path
    model: str
    methods: tuple[str, ...]
    keep_models: bool = False
    threads: int | None = None
    max_lengths: dict[str, int] = field(default_factory=dict)


def seeds_for(profile: Profile, method: str) -> tuple[int, ...]:
    """The seeds a method runs with: all, except throttling and thresholded under `selector_seeds`."""
    if method in ("throttling", "thresholded") and profile.selector_seeds is not None:
        return profile.seeds[:profile.selector_seeds]
    return profile.seeds


def result_stem(profile: Profile) -> str:
    """paper.md for the default benchmark; paper-full.md, paper-smoke.md for the other profiles."""
    return "paper" if profile.name == "budget" else f"paper-{profile.name}"
