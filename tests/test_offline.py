"""The Hugging Face libraries stay quiet, and hub names fail fast without the network.

No test here reaches the network: "no network" is a hub endpoint on a closed local port.
"""

from __future__ import annotations

import json

from tests.browser import free_port
from tests.conftest import assert_user_error

NO_PROXY_SERVER = {
    v: ""
    for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
}


def no_network() -> dict[str, str]:
    """Online mode, with the hub on a local port where nothing listens."""
    return {
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        **NO_PROXY_SERVER,
    }


def test_a_hub_dataset_without_network_is_one_line(cli):
    line = assert_user_error(
        cli("validate", "someone/no-such-dataset", env=no_network()),
        "someone/no-such-dataset",
        "cannot reach the Hugging Face hub",
        "HF_HUB_OFFLINE=1",
    )
    assert "--" not in line  # the same words serve the Data page, which has no flags


def test_a_hub_dataset_in_offline_mode_is_one_line(cli):
    line = assert_user_error(
        cli("import", "someone/no-such-dataset"), "someone/no-such-dataset", "offline"
    )
    assert "--" not in line


def test_a_hub_proxy_without_network_is_one_line(cli):
    assert cli("demo").code == 0
    assert_user_error(
        cli("embed", "demo", "--proxy", "someone/no-such-model", env=no_network()),
        "someone/no-such-model",
        "cannot reach the Hugging Face hub",
        "not in the local Hugging Face cache",
    )
    assert_user_error(
        cli("embed", "demo", "--proxy", "someone/no-such-model"), "someone/no-such-model"
    )


def test_hf_export_prints_only_its_json(cli, tmp_path):
    assert cli("demo").code == 0
    r = cli("export", "demo", "--format", "hf", "--out", str(tmp_path / "out"), "--json")
    assert r.code == 0 and r.err == ""
    assert json.loads(r.out)["rows"] == 360
