"""The app's Streamlit settings (.streamlit/config.toml) take effect as Streamlit reads them."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

PROBE = """
import json
import sys
from streamlit import config
from streamlit.watcher.folder_black_list import FolderBlackList
from streamlit.watcher.path_watcher import get_default_path_watcher_class

config.get_config_options(force_reparse=True)
blacklist = FolderBlackList(config.get_option("server.folderWatchBlacklist"))
print(json.dumps({
    "watcher": get_default_path_watcher_class().__name__,
    "cache": blacklist.is_blacklisted(sys.argv[1] + "/cache/datasets/x/module.py"),
    "source": blacklist.is_blacklisted(sys.argv[1] + "/core/records.py"),
}))
"""


def test_the_workspace_folder_is_not_watched():
    """cache/ (the default workspace, inside the repository) is never watched for changes:
    watchdog would watch the repository's folders recursively, cache/ included, so the
    watcher polls the source files, and the blacklist keeps cache/ out of those."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out.splitlines()[-1]) == {
        "watcher": "PollingPathWatcher",
        "cache": True,
        "source": False,
    }
