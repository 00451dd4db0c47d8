"""Third-party selector plugins: entry-point discovery, `xlc selectors`, broken plugins, XLC_PLUGINS.

Plugins are installed for real: the example package xlc-classprior by `make install`, and
throwaway ones here as a module plus a dist-info folder with an entry point (what
`pip install --target` writes) in a folder put on sys.path.
"""

from __future__ import annotations

import json
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import polars as pl
import pytest
import tomllib
from click.testing import CliRunner
from xlc_classprior import bbse_shares, quotas

import xlc
from xlc import Option, Selector, XlcError, hookimpl
from xlc.cli import main
from xlc.scoring import Scorer
from xlc.selectors import registry as manager
from xlc.selectors.registry import PLUGINS_ENV, add_plugin, available, get_selector, remove_plugin

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path for throwaway plugin packages; plugins load afresh from it."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    monkeypatch.setattr(manager, "_plugins", None)  # the loaded plugins come back after the test
    yield root
    for name in [n for n, m in sys.modules.items() if str(getattr(m, "__file__", "")).startswith(str(root))]:
        del sys.modules[name]


def install(site: Path, package: str, entry_point: str, source: str) -> None:
    """A one-module distribution `package` whose entry point `entry_point` in group xlc is the module."""
    module = package.replace("-", "_")
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{module}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(f"[xlc]\n{entry_point} = {module}\n")


GOOD = """
    import xlc

    @xlc.hookimpl
    def xlc_register_selectors(register):
        register(xlc.Selector("everything", lambda pool, options, context: pool))
"""


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args))


def test_xlc_selectors_lists_builtins_and_the_installed_plugin_with_package_and_version():
    result = run_cli("selectors", "--json")
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    rows = {row["name"]: row for row in listing["selectors"]}
    assert {"balanced", "throttling", "thresholded", "prior", "margin"} <= set(rows)
    assert rows["prior"]["package"] == "xlc-classprior"
    assert rows["prior"]["version"] == version("xlc-classprior")
    assert rows["prior"]["plugin"] == "classprior"
    assert {o["name"]: o["default"] for o in rows["prior"]["options"]} == {
        "kt": 40, "n": 0, "min_confidence": 0.0, "proportions": "labeled", "per_lang": False,
    }
    assert rows["balanced"]["package"] == "xlc" and rows["balanced"]["options"][0]["requirement"] == ">= 1"
    assert all(row["description"] for row in rows.values())
    table = run_cli("selectors")
    assert "prior" in table.stdout and "xlc-classprior" in table.stdout and "kt=40" in table.stdout


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_still_list(site):
    install(site, "xlc-broken-import", "broken_import", "import xlc_no_such_dependency\n")
    install(site, "xlc-good", "good", GOOD)
    result = run_cli("selectors")
    assert result.exit_code == 0
    assert {"balanced", "prior", "everything"} <= set(result.stdout.split())
    assert ("broken plugin 'broken_import' (package xlc-broken-import): ModuleNotFoundError: "
            "No module named 'xlc_no_such_dependency'") in result.stderr
    assert f"{PLUGINS_ENV}=none" in result.stderr  # how to get rid of it
    listing = json.loads(run_cli("selectors", "--json").stdout)
    assert [b["plugin"] for b in listing["broken"]] == ["broken_import"]
    with pytest.raises(XlcError) as info:
        get_selector("from-the-broken-one")
    assert ("plugin 'broken_import' (package xlc-broken-import) failed to load: ModuleNotFoundError"
            in str(info.value))


def hook(signature: str, body: str = "pass", marked: bool = True) -> str:
    """A plugin module with one hook function."""
    return f"import xlc\n\n{'@xlc.hookimpl' if marked else ''}\ndef {signature}:\n    {body}\n"


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (hook("xlc_register_selector(register)"), "unknown hook 'xlc_register_selector'"),
        (hook("xlc_register_selectors(register)", marked=False),
         "implements no xlc hook; mark a function xlc_register_selectors(register) with @xlc.hookimpl"),
        (hook("xlc_register_selectors(reg)"),
         "Argument(s) {'reg'} are declared in the hookimpl but can not be found in the hookspec"),
        (hook("xlc_register_selectors(register)", "register('everything')"),
         "register() takes an xlc.Selector, got str"),
        (hook("xlc_register_selectors(register)", "raise RuntimeError('boom')"), "RuntimeError: boom"),
    ],
)
def test_a_plugin_that_does_not_keep_the_contract_is_reported_by_name(site, source, error):
    install(site, "xlc-sloppy", "sloppy", source)
    loaded = manager.plugins()
    assert [(f.plugin, f.package) for f in loaded.failures] == [("sloppy", "xlc-sloppy")]
    assert error in loaded.failures[0].error
    assert not loaded.pm.has_plugin("sloppy")
    assert {"balanced", "prior"} <= set(loaded.selectors)


def test_a_plugin_registering_a_taken_name_is_left_out_entirely_and_both_plugins_are_named(site):
    install(site, "xlc-squatter", "squatter", """
        import xlc

        @xlc.hookimpl
        def xlc_register_selectors(register):
            register(xlc.Selector("fresh", lambda pool, options, context: pool))
            register(xlc.Selector("prior", lambda pool, options, context: pool))
    """)
    loaded = manager.plugins()
    assert loaded.failures[0].plugin == "squatter" and loaded.failures[0].package == "xlc-squatter"
    assert loaded.failures[0].error == (
        "selector name 'prior' is already registered by plugin 'classprior' (package xlc-classprior); "
        "choose another name"
    )
    assert loaded.selectors["prior"].package == "xlc-classprior"
    assert "fresh" not in loaded.selectors  # all of a plugin's selectors, or none


def test_two_packages_with_the_same_entry_point_name_are_not_both_loaded(site):
    install(site, "xlc-other-classprior", "classprior", GOOD)
    loaded = manager.plugins()
    assert [(f.plugin, f.package) for f in loaded.failures] == [("classprior", "xlc-other-classprior")]
    assert loaded.failures[0].error == (
        "entry point name 'classprior' is already used by package xlc-classprior; "
        "rename the entry point in one of the two packages"
    )
    assert "prior" in loaded.selectors and "everything" not in loaded.selectors


@pytest.mark.parametrize(
    ("value", "loaded", "failures"),
    [
        (None, {"prior", "margin", "everything"}, ["broken_import"]),
        ("none", set(), []),
        ("", set(), []),
        ("classprior", {"prior", "margin"}, []),
        ("xlc-classprior, good", {"prior", "margin", "everything"}, []),  # package or entry point names
        ("XLC_Good", {"everything"}, []),  # spelt as pip would accept it
        ("classprior,nosuch", {"prior", "margin"}, ["nosuch"]),
    ],
)
def test_xlc_plugins_limits_which_third_party_plugins_load(site, monkeypatch, value, loaded, failures):
    install(site, "xlc-broken-import", "broken_import", "raise ImportError('broken on purpose')\n")
    install(site, "xlc-good", "good", GOOD)
    if value is not None:
        monkeypatch.setenv(PLUGINS_ENV, value)
    plugins = manager.plugins()
    assert set(plugins.selectors) == {"balanced", "throttling", "thresholded", "pool"} | loaded  # built-ins always
    assert [f.plugin for f in plugins.failures] == failures


def test_naming_a_plugin_that_is_not_installed_says_so(site, monkeypatch):
    monkeypatch.setenv(PLUGINS_ENV, "nosuch")
    result = run_cli("selectors")
    assert result.exit_code == 0
    assert "XLC_PLUGINS names 'nosuch', but no installed package declares" in result.stderr


class Registers:
    """A run-time plugin that registers the given selectors."""

    def __init__(self, *selectors):
        self.selectors = selectors

    @hookimpl
    def xlc_register_selectors(self, register):
        for selector in self.selectors:
            register(selector)


def keep_all(pool, options, context):
    return pool


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (Selector("two words", keep_all), "selector name 'two words' must start with a letter or digit"),
        (Selector("x", "not a function"), "selector 'x': select must be a function"),
        (Selector("x", keep_all, options=(Option("k", int, 0, check=lambda v: v >= 1, requirement=">= 1"),)),
         "selector 'x': option k must be >= 1, got 0 (the option's default)"),
        (Selector("x", keep_all, options=(Option("k", int, "3"),)),
         "option k must be int, got '3' (the option's default)"),
        (Selector("x", keep_all, options=(Option("k", list, []),)), "option k has type <class 'list'>"),
        (Selector("x", keep_all, options=(Option("k", int, 1), Option("k", int, 2))),
         "option name 'k' is invalid or repeated"),
    ],
)
def test_an_invalid_selector_is_refused_at_registration(selector, message):
    with pytest.raises(XlcError) as info:
        add_plugin(Registers(selector), "test-invalid", package="test-package")
    assert "plugin 'test-invalid' (package test-package): " in str(info.value)
    assert message in str(info.value)
    assert not manager.plugins().pm.has_plugin("test-invalid")
    assert "x" not in available()


def test_every_hook_is_documented_in_hookspecs_and_the_readme():
    readme = README.read_text()
    assert "xlc/selectors/hookspecs.py" in readme
    hooks = {n: caller for n, caller in vars(manager.plugins().pm.hook).items() if not n.startswith("_")}
    assert hooks
    for name, caller in hooks.items():
        assert caller.spec is not None, f"{name}: no hookspec"
        assert (caller.spec.function.__doc__ or "").strip(), f"{name}: no docstring"
        signature = f"{name}({', '.join(caller.spec.argnames)})"
        assert signature in readme, f"README does not show {signature}"


def selftrain_args(model, files, out, *extra: str) -> list[str]:
    return ["selftrain", "--quiet", "--model", str(model), "--out", str(out),
            "--train", str(files["train"]), "--unlabeled", str(files["unlabeled"]),
            "--dev", str(files["dev"]), "--epochs", "1", "--batch-size", "16", "--max-length", "32", *extra]


def test_selftrain_with_the_plugins_prior_selector_splits_by_the_labeled_classes(
    tiny_model, small_files, tmp_path
):
    options = tmp_path / "prior.toml"
    options.write_text("n = 99\nmin_confidence = 0.0\n")
    out = tmp_path / "run"
    result = run_cli(*selftrain_args(tiny_model, small_files, out, "--selector", "prior", "--selector-config",
                                     str(options), "--n", "12", "--selector-opt", "kt=3",
                                     "--max-rounds", "1", "--patience", "5", "--keep-round-models"))
    assert result.exit_code == 0, result.output
    assert "selector prior" in result.stdout
    written = tomllib.loads((out / "config.toml").read_text())
    assert written["selector"] == "prior"
    # flags beat the file; the written config holds the options as the selector received them
    assert written["selector_options"] == {"n": 12, "min_confidence": 0.0, "kt": 3, "proportions": "labeled",
                                           "per_lang": False}
    report = json.loads((out / "report.json").read_text())
    train = pl.read_parquet(small_files["train"])
    share = quotas(12, dict(train["label"].value_counts().iter_rows()), report["classes"])
    # The round-0 model's predictions, scored in the same batches as the run scored them.
    pool = pl.read_parquet(small_files["unlabeled"]).select("text")
    scored = Scorer.open(out / "round-00" / "onnx").score(pool, max_length=32).with_row_index("id")
    expected = (scored.sort(["confidence", "id"], descending=[True, False])
                .filter(pl.int_range(pl.len()).over("label") < pl.col("label").replace_strict(share)))
    selected = pl.read_parquet(out / "round-00" / "selected.parquet")
    assert set(selected["selector"]) == {"prior"}
    assert sorted(selected.select("text", "label").rows()) == sorted(expected.select("text", "label").rows())
    per_class = report["rounds"][0]["selected_per_class"]
    assert all(per_class[c] <= share[c] for c in share) and sum(share.values()) == 12


@pytest.fixture(scope="module")
def bbse_run(tiny_model, module_files, tmp_path_factory) -> Path:
    """One round of `prior` with proportions=bbse, without --dev: dev is the held-out English share."""
    out = tmp_path_factory.mktemp("bbse") / "run"
    xlc.selftrain(train=pl.read_parquet(module_files["train"]), unlabeled=pl.read_parquet(module_files["unlabeled"]),
                  selector="prior", selector_options={"proportions": "bbse", "n": 14}, model=str(tiny_model),
                  out=out, epochs=1, batch_size=16, max_length=32, max_rounds=1, patience=5)
    return out


def test_selftrain_with_prior_bbse_splits_by_the_pool_shares_estimated_from_the_dev_confusion(bbse_run):
    report = json.loads((bbse_run / "report.json").read_text())
    classes = report["classes"]
    assert report["rounds"][0]["dev"]["n"] > 0  # the held-out English texts
    confusion = json.loads((bbse_run / "round-00" / "eval.json").read_text())["dev"]["confusion"]
    found = dict(pl.read_parquet(bbse_run / "round-00" / "scored.parquet")["label"].value_counts().iter_rows())
    predicted = {c: found.get(c, 0) for c in classes}
    shares = bbse_shares(confusion, [predicted[c] for c in classes])
    share = quotas(14, {c: round(1_000_000 * s) for c, s in zip(classes, shares, strict=True)}, classes)
    even = quotas(14, {}, classes)
    selected = report["rounds"][0]["selected_per_class"]
    assert selected == {c: min(share[c], predicted[c]) for c in classes}  # short classes give what they have
    assert selected != {c: min(even[c], predicted[c]) for c in classes}  # not forced even


def test_xlc_select_replays_prior_bbse_with_the_rounds_dev_confusion(bbse_run):
    result = run_cli("select", "--json", "--scored", str(bbse_run / "round-00" / "scored.parquet"),
                     "--selector", "prior", "--n", "14", "--selector-opt", "proportions=bbse")
    assert result.exit_code == 0, result.output
    replayed = json.loads(result.stdout)
    assert replayed["run_selection"]["taken"] == replayed["run_selection"]["overlap"] == replayed["taken"]


def test_a_misbehaving_plugin_stops_selftrain_with_one_line_naming_it(tiny_model, small_files, tmp_path):
    def stray(pool, options, context):
        return pl.DataFrame({"id": [10_000], "label": [context.classes[0]]})

    add_plugin(Registers(Selector("stray", stray)), "test-stray", package="xlc-stray")
    try:
        result = run_cli(*selftrain_args(tiny_model, small_files, tmp_path / "run", "--selector", "stray",
                                         "--max-rounds", "1"))
    finally:
        remove_plugin("test-stray")
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1] == (
        "Error: selector 'stray' (plugin 'test-stray', package xlc-stray) returned id 10000, "
        "which is not in the pool"
    )
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (None, (), "--selector-config {path}: file not found"),
        ("n = ", (), "--selector-config {path}: not valid TOML"),
        ("[prior]\nn = 3\n", (),
         "'prior' is a dict; the file holds one selector's options as key = value lines"),
        ("nn = 3\n", ("--selector", "prior"),
         "selector 'prior' has no option 'nn' (its options: kt, n, min_confidence, proportions, per_lang)"),
        ("n = 0\n", ("--selector", "throttling"), "selector 'throttling': option n must be >= 1, got 0"),
    ],
)
def test_a_bad_selector_config_gives_one_line_error(
    tiny_model, small_files, tmp_path, content, extra, message
):
    path = tmp_path / "options.toml"
    if content is not None:
        path.write_text(content)
    args = selftrain_args(tiny_model, small_files, tmp_path / "run", "--selector-config", str(path), *extra)
    result = run_cli(*args)
    assert result.exit_code != 0
    assert message.format(path=path) in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # refused before any work
