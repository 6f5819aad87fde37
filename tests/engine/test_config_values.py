"""Values reach MONAI's config parser as literals; override keys are checked against the bundle's configs."""

import pytest
from monai.bundle import ConfigParser

from medseg_dropclass.engine.config_values import (
    ConfigKeyError,
    Expression,
    check_override_keys,
    literal,
    parse_cli_overrides,
    parser_overrides,
)

VALUES = [
    "plain",
    "in/a#b",
    "@x",
    "%x",
    "$x",
    "a@b",
    "C:\\scans\\a b",
    "quote ' and \" and \\",
    "é€ 𝄞",
    "line\nbreak",
    "",
    "$__import__('os').system('touch PWNED')",
    ["$x", 1, None, 2.5, True],
    {"_target_": "os.system", "command": "touch PWNED"},
    {"a#b": "@y", "n": [1, {"k": "%m"}]},
    3,
    -1e-3,
    True,
    None,
    [1, 2],
    {"max_value": 0.5},
    (1, "#"),
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_every_value_parses_back_to_itself_and_runs_nothing(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parser = ConfigParser({"x": 1, "y": 2, "m": 3})
    parser.update(parser_overrides({"v": value}))
    expected = list(value) if isinstance(value, tuple) else value
    assert parser.get_parsed_content("v") == expected
    assert not (tmp_path / "PWNED").exists()


def test_plain_values_stay_as_they_are_and_project_expressions_pass():
    assert (
        literal("runs/a") == "runs/a"
        and literal([1, 2]) == [1, 2]
        and literal({"max_value": 0.5}) == {"max_value": 0.5}
    )
    assert literal("a#b") == "$'a\\x23b'"  # '#' would become '::' (MONAI's id separator)
    assert literal(Expression("$torch.device('cpu')")) == "$torch.device('cpu')"
    with pytest.raises(TypeError, match="cannot be a config value"):
        literal(object())


def test_a_named_rule_is_a_reference_to_the_bundles_own_entry():
    config = {"sampling_weights_rules": {"host": "$f()", "share": "$g()"}}
    assert parser_overrides({"sampling_weights": "host"}, config) == {
        "sampling_weights": "@sampling_weights_rules#host"
    }
    assert parser_overrides({"sampling_weights": "@x"}, config) == {"sampling_weights": "$'\\x40x'"}


def test_unknown_and_reserved_keys_are_refused_with_the_closest_known_ones():
    config = {
        "max_epochs": 3,
        "ckpt_path": "x",
        "ckpt_dir": "y",
        "loss": {"_target_": "medseg_dropclass.DropClassLoss", "alpha": 1.0},
        "network_def": {"_target_": "medseg_dropclass.build_network", "name": "unet"},
    }
    check_override_keys(
        config, ["max_epochs", "loss#alpha", "loss#suppression", "network_def#feature_channels", "loss::alpha"]
    )
    with pytest.raises(ConfigKeyError, match=r"'max_epoch' is not a key of .*; closest: max_epochs"):
        check_override_keys(config, ["max_epoch"])
    with pytest.raises(ConfigKeyError, match=r"'ckpt' is not a key .*closest: ckpt_dir, ckpt_path"):
        check_override_keys(config, ["ckpt"])
    with pytest.raises(
        ConfigKeyError, match=r"DropClassLoss takes no argument 'suppresion'; closest: loss#suppression"
    ):
        check_override_keys(config, ["loss#suppresion"])
    with pytest.raises(ConfigKeyError, match=r"'loss#_target_' is reserved"):
        check_override_keys(config, ["loss#_target_"])


def test_command_line_values_are_literals_of_their_type():
    assert parse_cli_overrides(
        [
            "--max_epochs",
            "3",
            "--amp",
            "false",
            "--dropclass",
            "False",
            "--x=in/a#b",
            "--lr",
            "-1e-3",
            "--crop",
            "[16, 16]",
            "--s",
            "$__import__('os')",
            "--n",
            "null",
        ]
    ) == {
        "max_epochs": 3,
        "amp": False,
        "dropclass": False,
        "x": "in/a#b",
        "lr": -0.001,
        "crop": [16, 16],
        "s": "$__import__('os')",
        "n": None,
    }
    for bad, message in (
        (["train"], "expected --key value"),
        (["--a"], "--a needs a value"),
        (["--a", "1", "--a", "2"], "given twice"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_cli_overrides(bad)


def test_cli_options_are_the_config_keys_with_hyphens_and_the_project_names():
    from medseg_dropclass.engine.config_values import parse_cli_overrides

    parsed = parse_cli_overrides(
        [
            "--max-epochs",
            "3",
            "--ckpt",
            "m.pt",
            "--format=dicom-seg",
            "--network_def#feature_channels",
            "8",
            "--output_dir",
            "out",
        ]
    )
    assert parsed == {
        "max_epochs": 3,
        "ckpt_path": "m.pt",
        "output_format": "dicom-seg",
        "network_def#feature_channels": 8,
        "output_dir": "out",
    }
    with pytest.raises(ValueError, match="--ckpt_path given twice"):
        parse_cli_overrides(["--ckpt", "a.pt", "--ckpt_path", "b.pt"])
