"""Settings declared once (core/settings.py): the CLI's flags come from the dataclasses'
fields, one FeatureRequest maps flat settings (flags or saved) to what is computed."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields

import pytest

from core.__main__ import LLM_FLAGS, SYNTHESIS_FLAGS, build_parser, feature_request
from core.config import (
    FeatureConfig,
    FeatureRequest,
    ProxySpec,
    Runtime,
    SynthesisSettings,
)
from core.errors import OutOfRange, UserError
from core.llm import LLMSettings
from core.settings import (
    Bound,
    bound_of,
    check_bounds,
    default_of,
    flag_of,
    flat_name,
    help_of,
    kind_of,
)
from tests.conftest import assert_user_error

FEATURE_SETTINGS = (ProxySpec, FeatureConfig, Runtime)


def actions(verb: str) -> dict[str, argparse.Action]:
    """The flags of a verb's parser, by flag."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {s: a for a in sub.choices[verb]._actions for s in a.option_strings}


def test_every_field_has_help_and_every_bound_is_a_bound():
    for settings in (*FEATURE_SETTINGS, SynthesisSettings, LLMSettings):
        for f in fields(settings):
            if f.name == "api_key":  # never a flag nor a widget: it is never stored
                continue
            assert help_of(settings, f.name), (settings, f.name)
            assert isinstance(bound_of(settings, f.name), Bound)
    assert flag_of(ProxySpec, "name") == "--proxy" and flat_name(ProxySpec, "name") == "proxy"
    assert flag_of(FeatureConfig, "max_length") == "--max-length"
    assert flag_of(SynthesisSettings, "problems_per_prompt") == "--problems"
    assert flag_of(LLMSettings, "max_tokens_total") == "--max-tokens"
    assert kind_of(Runtime, "batch_size") is int and kind_of(LLMSettings, "timeout") is float
    assert kind_of(ProxySpec, "trust_remote_code") is bool
    assert kind_of(SynthesisSettings, "clusters") is str  # a tuple: given as text


@pytest.mark.parametrize("verb", ["embed", "score", "map", "synthesize", "export"])
def test_feature_flags_come_from_the_fields(verb):
    flags = actions(verb)
    for settings in FEATURE_SETTINGS:
        for f in fields(settings):
            action = flags[flag_of(settings, f.name)]
            assert action.dest == flat_name(settings, f.name)
            assert action.default == f.default
            assert action.help.startswith(help_of(settings, f.name))
    assert flags["--method"].choices == ("factorized", "exact", "file")


def test_synthesize_flags_come_from_the_fields():
    flags = actions("synthesize")
    for settings, names in ((SynthesisSettings, SYNTHESIS_FLAGS), (LLMSettings, LLM_FLAGS)):
        for name in names:
            action = flags[flag_of(settings, name)]
            default = default_of(settings, name)
            assert action.default == (None if default is MISSING else default), name
            assert action.help.startswith(help_of(settings, name)), name
    assert flags["--clusters"].default == "auto"
    assert flags["--verifier"].choices == ("math", "label")
    # the map's sparse percentile is the same setting, with the same range
    assert actions("map")["--sparse-below"].default == default_of(SynthesisSettings, "sparse_below")


def test_flag_defaults_are_the_dataclass_defaults():
    args = build_parser().parse_args(["embed", "d"])
    assert feature_request(args) == FeatureRequest()
    args = build_parser().parse_args(
        ["synthesize", "d", "--base-url", "http://h/v1", "--model", "m"]
    )
    assert feature_request(args) == FeatureRequest()


def test_one_mapping_from_flags_and_from_saved_settings():
    flags = ["--proxy", "tiny-random", "--revision", "abc", "--method", "exact", "--dim", "64"]
    flags += ["--rank", "8", "--seed", "3", "--max-length", "100", "--device", "cpu"]
    flags += ["--batch-size", "4", "--token-budget", "512", "--chunk-rows", "32"]
    from_flags = feature_request(build_parser().parse_args(["embed", "d", *flags]))
    assert from_flags == FeatureRequest(
        ProxySpec("tiny-random", "abc"),
        FeatureConfig("exact", 64, 8, 3, 100),
        Runtime("cpu", 4, 512, 32),
    )
    saved = from_flags.to_saved()
    assert "trust_remote_code" not in saved and saved["proxy"] == "tiny-random"
    assert FeatureRequest.from_saved(saved) == from_flags
    # what the sidebar saved before: only some keys, numbers as JSON gives them
    older = {
        "proxy": "tiny-random",
        "method": "exact",
        "device": "cpu",
        "dim": 64.0,
        "revision": "",
    }
    request = FeatureRequest.from_saved(older)
    assert request.proxy == ProxySpec("tiny-random", None)
    assert request.config == FeatureConfig(method="exact", dim=64)
    assert isinstance(request.config.dim, int) and request.runtime == Runtime(device="cpu")
    # remote code runs only from the command line, never from saved settings
    assert not FeatureRequest.from_saved({"trust_remote_code": True}).proxy.trust_remote_code
    with pytest.raises(UserError, match="setting dim: 'many' is not a number"):
        FeatureRequest.from_saved({"dim": "many"})


def test_bounds_are_checked_and_named():
    with pytest.raises(
        OutOfRange, match="chunk rows must be at least 1 and at most 1000000, not 0"
    ):
        check_bounds(Runtime(chunk_rows=0))
    check_bounds(Runtime(batch_size=None))  # None is always allowed


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["embed", "d", "--dim", "0"], "--dim must be at least 8 and at most 65536, not 0"),
        (["embed", "d", "--dim", "many"], "--dim 'many' is not a whole number"),
        (["embed", "d", "--token-budget", "4"], "--token-budget must be at least 8, not 4"),
        (["map", "d", "--sparse-below", "0"], "--sparse-below must be more than 0 and at most 100"),
        (["synthesize", "d", "--target", "0"], "--target must be at least 1, not 0"),
        (["synthesize", "d", "--timeout", "nan"], "--timeout must be a finite number"),
        (["synthesize", "d", "--verifier", "vibes"], "invalid choice: 'vibes'"),
    ],
)
def test_a_flag_out_of_range_is_one_line_naming_it(cli, args, says):
    assert_user_error(cli(*args), says)


def test_help_reads_from_the_fields(cli):
    r = cli("embed", "--help")
    assert r.code == 0
    text = " ".join(r.out.split())
    assert "--dim DIM feature dimensions (default: 1024)" in text
    assert "--seed SEED projection seed (default: 0)" in text
    assert "--batch-size BATCH_SIZE at most this many samples per batch" in text
    r = cli("synthesize", "--help")
    text = " ".join(r.out.split())
    assert "--problems PROBLEMS problems asked for per request (default: 2)" in text
    assert "--max-tokens MAX_TOKENS stop after this many tokens in all" in text
