"""Streamlit glue shared by the pages: the workspace, the sidebar, progress and errors.

Pages stay thin: widgets and calls into core/. Everything here is about the UI; no
computation lives in this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from core import demo, diversity, maps
from core.config import (
    DEFAULT_PROXY,
    DEVICES,
    FILE,
    FILE_PREFIX,
    METHODS,
    SPACES,
    FeatureConfig,
    FeatureRequest,
    ProxySpec,
    Runtime,
)
from core.disagreement import Space
from core.disagreement import disagreement as find_disagreement
from core.encoders import encoder_for
from core.errors import UserError
from core.estimate import estimate_features
from core.features import FeatureSet, compute_features, feature_sets, find_features
from core.files import atomic_write
from core.progress import ProgressFn
from core.proxy import TINY_PROXIES
from core.records import Report
from core.settings import bound_of, choices_of, default_of, help_of, kind_of
from core.workspace import DatasetInfo, Workspace, dataset_vanished, resolve_root

ACTIVE_KEY = "active_dataset"
SETTINGS_KEY = "feature_settings"
_MARKUP = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=^&\"'])")


@st.cache_resource(show_spinner=False)
def _open_workspace(root: str) -> Workspace:
    return Workspace(root)


@st.cache_resource(show_spinner=False)
def _ensure_demo(root: str) -> None:
    """Import the demo into a workspace the first time it opens (once per server process)."""
    demo.ensure_demo(_open_workspace(root))


def md(text: object) -> str:
    """`text` (from a dataset, a file name, a field name, a server's reply) escaped for any
    Streamlit element that renders Markdown (markdown, caption, info, labels...), so that it
    shows as typed: no links, images, HTML, LaTeX, colours or icons. Streamlit's own
    extensions (`:material/x:`, `:red[...]`) and GFM's bare-URL and e-mail links survive
    backslash escapes, so a word joiner (U+2060, invisible) breaks their triggers."""
    escaped = _MARKUP.sub(r"\\\1", str(text)).replace("\n", "  \n")
    return (
        escaped.replace("\\:", "\\:\u2060")
        .replace("@", "\u2060@")
        .replace("www\\.", "www\u2060\\.")
    )


def _root() -> str:
    """The workspace folder of this session."""
    return st.session_state.get("workspace_root") or str(resolve_root())


def workspace() -> Workspace:
    """The workspace of this session (the sidebar can switch it); the demo is there on first
    start. Says what a cancelled action kept, once, on the page after the cancel."""
    root = _root()
    if note := st.session_state.pop("cancelled_note", None):
        st.info(note, icon=":material/info:")  # our own words
    ws = _open_workspace(root)
    # a spinner shows only after half a second: here only while the demo is imported
    with st.spinner("Importing the demo dataset (first start only)..."):
        _ensure_demo(root)
    return ws


def active_dataset(ws: Workspace) -> DatasetInfo | None:
    """The dataset the curator works on (kept in the workspace, so a refresh keeps it)."""
    names = [d.name for d in ws.datasets()]
    if not names:
        return None
    current = ws.get_meta(ACTIVE_KEY)
    return ws.dataset(current if current in names else names[0])


def set_active(ws: Workspace, name: str) -> None:
    ws.set_meta(ACTIVE_KEY, name)


def feature_request(ws: Workspace) -> FeatureRequest:
    """The proxy, feature settings and device chosen in the sidebar (kept in the workspace):
    (proxy, config, runtime)."""
    return FeatureRequest.from_saved(json.loads(ws.get_meta(SETTINGS_KEY) or "{}"))


def sidebar(ws: Workspace) -> None:
    """The workspace, the active dataset, and the proxy / method / device for features."""
    with st.sidebar:
        st.caption(f"Workspace: {md(ws.root.resolve())}")
        info = active_dataset(ws)
        if info is None:
            st.info("No datasets yet: import one on the Data page.")
        else:
            # the workspace holds the choice: shown on every run, saved when the user picks one
            st.session_state["sidebar_active"] = info.name
            st.selectbox(
                "Active dataset",
                [d.name for d in ws.datasets()],
                key="sidebar_active",
                on_change=lambda: set_active(ws, st.session_state["sidebar_active"]),
            )
            st.caption(f"{info.rows:,} rows · from {md(info.source)}")
        _feature_settings(ws, info)
        with st.expander("Switch workspace"):
            new_root = st.text_input("Folder", value=str(ws.root), key="workspace_input")
            if st.button("Open", key="workspace_open") and new_root != str(ws.root):
                try:
                    _open_workspace(new_root)
                except UserError as e:
                    st.error(md(e))
                else:
                    st.session_state["workspace_root"] = new_root
                    st.rerun()


_OTHER_PROXY = "Another model (hub name or folder)"
# the feature settings in the expander: their widgets' labels and steps
_NUMBERS = {
    "dim": ("Dimensions", 64),
    "rank": ("Per-layer rank", 1),
    "seed": ("Seed", 1),
    "max_length": ("Max tokens per sample", 64),
}


def imported_vectors(ws: Workspace, info: DatasetInfo | None) -> dict[str, str]:
    """The complete sets of vectors imported into the dataset (method file): their identity
    (the proxy name that picks them) -> a label naming the file."""
    if info is None:
        return {}
    return {
        s["proxy"]: f"Imported: {s['facts'].get('imported_from', s['proxy'])} ({s['dim']} dims)"
        for s in feature_sets(ws, info.name)
        if s["config"].get("method") == FILE and s["complete"]
    }


def use_features(ws: Workspace, fs: FeatureSet) -> None:
    """Make the sidebar's settings pick the feature set `fs` (its proxy and settings; for
    imported vectors, their identity and the method file, the other numbers kept)."""
    _, config, runtime = feature_request(ws)
    if fs.config.method == FILE:
        chosen = FeatureRequest(ProxySpec(fs.proxy), replace(config, method=FILE), runtime)
    else:
        chosen = FeatureRequest(fs.encoder.proxy, fs.config, runtime)
    ws.set_meta(SETTINGS_KEY, json.dumps(chosen.to_saved()))


def _feature_settings(ws: Workspace, info: DatasetInfo | None) -> None:
    """Sidebar widgets for the proxy (or vectors imported into the active dataset), method,
    device and feature settings. The workspace holds the settings: the widgets show them on
    every run (so a change made elsewhere, in another tab or by the CLI, shows up) and write
    them back only when the user edits one."""
    proxy, config, runtime = feature_request(ws)
    imported = imported_vectors(ws, info)
    presets = [DEFAULT_PROXY, *TINY_PROXIES, *imported]
    shown = {
        "sb_proxy": proxy.name if proxy.name in presets else _OTHER_PROXY,
        "sb_proxy_other": "" if proxy.name in presets else proxy.name,
        "sb_method": config.method,
        "sb_device": runtime.device,
        # within the widgets' bounds, so that a value saved elsewhere cannot break the sidebar
        **{f"sb_{name}": _clamped(FeatureConfig, name, getattr(config, name)) for name in _NUMBERS},
    }
    st.session_state.update(shown)

    def save() -> None:
        get = st.session_state.get
        name = get("sb_proxy")
        if name == _OTHER_PROXY:
            name = (get("sb_proxy_other") or "").strip() or DEFAULT_PROXY
        method = get("sb_method")
        if name.startswith(FILE_PREFIX):  # imported vectors
            method = FILE
        elif method == FILE:  # back from imported vectors to a proxy
            method = default_of(FeatureConfig, "method")
        chosen = FeatureRequest(
            # a pinned revision belongs to its proxy
            replace(proxy, name=name, revision=proxy.revision if name == proxy.name else None),
            replace(
                config,
                method=method,
                **{field: int(get(f"sb_{field}")) for field in _NUMBERS},
            ),
            replace(runtime, device=get("sb_device")),
        )
        ws.set_meta(SETTINGS_KEY, json.dumps(chosen.to_saved()))

    st.subheader("Gradient features", divider="gray")
    picked = st.selectbox(
        "Proxy model",
        [*presets, _OTHER_PROXY],
        format_func=lambda name: imported.get(name, name),  # shown as text, not Markdown
        key="sb_proxy",
        on_change=save,
        help=tooltip(ProxySpec, "name"),
    )
    if picked == _OTHER_PROXY:
        st.text_input("Hub name or local folder", key="sb_proxy_other", on_change=save)
    if config.method == FILE:
        st.caption("Vectors imported from a file: their method and dimensions are the file's.")
    else:
        setting_choice(
            st.radio,
            "Method",
            FeatureConfig,
            "method",
            key="sb_method",
            on_change=save,
            only=METHODS,  # the file method is picked with its vectors, above
            horizontal=True,
        )
    st.selectbox(
        "Device", DEVICES, key="sb_device", on_change=save, help=tooltip(Runtime, "device")
    )
    uses = encoder_for(proxy, config).settings()  # the settings the chosen method reads
    with st.expander("Feature settings"):
        for name, (label, step) in _NUMBERS.items():
            setting_input(
                st,
                label,
                FeatureConfig,
                name,
                key=f"sb_{name}",
                on_change=save,
                step=step,
                disabled=name not in uses,
            )


def _clamped(settings: type, name: str, value: float) -> float:
    """`value` moved into the field's Bound."""
    bound = bound_of(settings, name)
    if bound.low is not None:
        value = max(value, kind_of(settings, name)(bound.low))
    if bound.high is not None:
        value = min(value, kind_of(settings, name)(bound.high))
    return value


def tooltip(settings: type, name: str) -> str:
    """A settings field's help (core/settings.py) as a widget's help: a sentence."""
    text = help_of(settings, name)
    return text[0].upper() + text[1:] + "."


def setting_default(settings: type, name: str) -> Any:
    """A settings field's default as its widget holds it: an optional number's None is 0."""
    default = default_of(settings, name)
    return kind_of(settings, name)(0) if default is None else default


def setting_input(
    where: Any, label: str, settings: type, name: str, *, key: str, on_change: Callable, **widget
) -> Any:
    """A number_input (in `where`: st, a column) for a settings field, its range and help
    from the field; an optional field (None by default) takes 0 for none. The value comes
    from the session's `key` (the caller puts it there: saved, else `setting_default`).
    Returns the value as the field takes it (None for an optional field's 0)."""
    kind, bound = kind_of(settings, name), bound_of(settings, name)
    optional = default_of(settings, name) is None
    low = 0 if optional else bound.low
    if st.session_state.get(key) is not None:  # a saved 1 for a float field: the widget's type
        st.session_state[key] = kind(st.session_state[key])
    value = where.number_input(
        label,
        min_value=None if low is None else kind(low),
        max_value=None if bound.high is None else kind(bound.high),
        key=key,
        on_change=on_change,
        help=tooltip(settings, name),
        **widget,
    )
    return (value or None) if optional else value


def setting_choice(
    widget: Callable,
    label: str,
    settings: type,
    name: str,
    *,
    key: str,
    on_change: Callable,
    only: tuple[str, ...] | None = None,
    **options,
) -> Any:
    """A choice widget (st.radio, a column's selectbox) over a settings field's choices
    (those in `only`, when given), with its help; the value comes from the session's `key`."""
    return widget(
        label,
        [c for c in choices_of(settings, name) if only is None or c in only],
        key=key,
        on_change=on_change,
        help=tooltip(settings, name),
        **options,
    )


def cancel_button(key: str, keeps: str) -> DeltaGenerator:
    """The Cancel button of a long action, above what comes next; returns its slot, to be
    emptied when the action ends. Clicking it makes Streamlit stop this run of the script at
    its next update of the page (a progress bar), so the work stops there; the next run
    says "Cancelled." and `keeps` (what the cancel kept) once, at the top of the page (see
    `workspace`). `key`: the button's widget key."""
    slot = st.empty()
    note = f"Cancelled. {keeps}"
    slot.button(
        "Cancel",
        key=key,
        icon=":material/stop_circle:",
        on_click=lambda: st.session_state.update(cancelled_note=note),
    )
    return slot


@contextmanager
def progress(label: str, unit: str = "", *, cancel: str | None = None) -> Iterator[ProgressFn]:
    """An st.progress bar driven by a core progress callback, with rate and time left when
    `unit` is given; removed when done. With `cancel` (what a cancel keeps), a Cancel
    button above it (`cancel_button`, key "cancel-<label>")."""
    cancel_slot = cancel_button(f"cancel-{label}", cancel) if cancel else st.empty()
    label = md(label)  # it may name a dataset
    bar = st.progress(0.0, text=label)
    started = time.perf_counter()
    first: list[int] = []

    def update(done: int, total: int | None) -> None:
        if not first:
            first.append(done)  # rows already done when this run started (a resumed run)
        fraction = min(done / total, 1.0) if total else 0.0
        text = f"{label} {fraction:.0%}" if total else label
        elapsed = time.perf_counter() - started
        if unit and total and done > first[0] and elapsed > 0:
            rate = (done - first[0]) / elapsed
            text += f" · {done:,}/{total:,} {unit} · {rate:.1f} {unit}/s · {(total - done) / rate:.0f} s left"
        bar.progress(fraction, text=text)

    try:
        yield update
    finally:
        bar.empty()
        cancel_slot.empty()


@dataclass
class FeaturePage:
    """What a page working on the active dataset's features needs."""

    ws: Workspace
    info: DatasetInfo
    proxy: ProxySpec
    config: FeatureConfig
    runtime: Runtime
    features: FeatureSet | None


def feature_page(
    title: str,
    caption: str,
    *,
    need_features: bool = True,
    estimate: bool = False,
    engine: bool = False,
) -> FeaturePage:
    """The head of a page on the active dataset: title, caption, the feature settings line,
    and its features, or a Compute button (the page stops there when they are needed),
    with, when `estimate`, how long computing them will take, and with `engine`, where they
    are computed (`engine_choice`)."""
    ws = workspace()
    st.title(title)
    st.caption(caption)
    info = active_dataset(ws)
    if info is None:
        st.info("Import a dataset on the Data page first.")
        st.stop()
    proxy, config, runtime = feature_request(ws)
    feature_summary(info, proxy, config, runtime)
    fs = features_or_button(ws, info, estimate=estimate, engine=engine)
    if fs is None and need_features:
        st.stop()
    return FeaturePage(ws, info, proxy, config, runtime, fs)


# how the summary line says a feature setting (others: "name value")
_SHOWN = {
    "method": "{}",
    "dim": "{} dims",
    "rank": "rank {}",
    "seed": "seed {}",
    "max_length": "up to {} tokens",
}


def feature_summary(
    info: DatasetInfo, proxy: ProxySpec, config: FeatureConfig, runtime: Runtime
) -> None:
    """One line naming the dataset and the feature settings (those the method uses); the
    warning for a random proxy."""
    if config.method == FILE:
        st.markdown(
            f"**{md(info.name)}** ({info.rows:,} rows) · vectors imported from a file "
            f"({md(proxy.name)})"
        )
        return
    shown = [
        _SHOWN.get(name, f"{name} {{}}").format(value)
        for name, value in encoder_for(proxy, config).settings().items()
    ]
    st.markdown(
        f"**{md(info.name)}** ({info.rows:,} rows) · proxy {md(proxy.name)} · "
        + " · ".join(shown)
        + f" · device {runtime.device}"
    )
    if proxy.name in TINY_PROXIES:
        st.warning(
            f"{md(proxy.name)} is a tiny random model for trying the workflow: its scores are not meaningful."
        )


def features_or_button(
    ws: Workspace,
    info: DatasetInfo,
    *,
    estimate: bool = False,
    engine: bool = False,
    space: str = "gradient",
) -> FeatureSet | None:
    """The active dataset's features for the sidebar's settings (or, for the map's `space`
    "sentence", its sentence embeddings: maps.space_request); when they are missing, a
    "Compute features" button ("Compute sentence embeddings") with progress and a Cancel
    (finished chunks are kept), with `engine`, where to compute them (`engine_choice`), and
    with `estimate`, how long the computation will take on this machine (`show_estimate`)."""
    proxy, config, runtime = feature_request(ws)
    proxy, config = maps.space_request(space, proxy, config)
    ready = attempt(lambda: find_features(ws, info.name, proxy=proxy, config=config))
    if ready:
        return ready
    if encoder_for(proxy, config).unavailable():  # imported vectors this dataset lacks
        st.info(
            f"Dataset {md(info.name)} has no imported vectors {md(proxy.name)}: attach them on "
            "the Features page, or choose a proxy in the sidebar."
        )
        return None
    if engine:
        runtime = engine_choice(ws)
    if estimate and runtime.engine == "local":
        show_estimate(ws, info, FeatureRequest(proxy, config, runtime))
    what = maps.space_noun(space)
    if st.button(f"Compute {what}", type="primary", icon=":material/play_arrow:"):
        keeps = "The finished chunks are kept: computing again resumes from them."
        with progress(f"Computing {what}", unit="samples", cancel=keeps) as bar:
            done = attempt(
                lambda: compute_features(
                    ws, info.name, proxy=proxy, config=config, runtime=runtime, on_progress=bar
                )
            )
        if done:
            st.rerun()
    return None


_ENGINES = {"local": "This machine", "ray": "A Ray cluster"}


def engine_choice(ws: Workspace) -> Runtime:
    """Where features are computed: this machine, or a Ray cluster at an address with its
    workers and GPUs per worker (core/ray_engine.py). Saved with the feature settings in
    the workspace, like the sidebar's; returns the runtime chosen."""
    request = feature_request(ws)
    runtime = request.runtime
    st.session_state.update(
        eng_kind=runtime.engine,
        eng_address=runtime.address or "",
        eng_workers=runtime.workers,
        eng_gpus=runtime.gpus_per_worker,
    )

    def save() -> None:
        get = st.session_state.get
        chosen = replace(
            runtime,
            engine=get("eng_kind") or "local",
            address=(get("eng_address") or "").strip() or None,
            workers=int(get("eng_workers")),
            gpus_per_worker=float(get("eng_gpus")),
        )
        ws.set_meta(SETTINGS_KEY, json.dumps(request._replace(runtime=chosen).to_saved()))

    kind = setting_choice(
        st.radio,
        "Compute on",
        Runtime,
        "engine",
        key="eng_kind",
        on_change=save,
        format_func=_ENGINES.get,
        horizontal=True,
    )
    if kind == "ray":
        address, workers, gpus = st.columns([2, 1, 1])
        address.text_input(
            "Cluster address",
            key="eng_address",
            on_change=save,
            placeholder="host:6379",
            help=tooltip(Runtime, "address"),
        )
        setting_input(workers, "Workers", Runtime, "workers", key="eng_workers", on_change=save)
        setting_input(
            gpus, "GPUs per worker", Runtime, "gpus_per_worker", key="eng_gpus", on_change=save
        )
        st.caption(
            "The cluster's workers load the proxy and send the features back here, where they "
            "are stored: no shared disk is needed. Each worker needs this project's Python "
            "packages and the proxy (its hub cache, or the same local folder)."
        )
    return feature_request(ws).runtime


def show_estimate(ws: Workspace, info: DatasetInfo, request: FeatureRequest) -> None:
    """How long computing the dataset's features with `request` will take on this machine,
    and its token counts (core/estimate.py: the proxy loaded, a short timed batch), kept per
    dataset contents and settings for every session."""
    proxy, config, runtime = request
    found = computed(
        "Estimating the time",
        ("estimate", str(ws.root), info.name, info.fingerprint, json.dumps(request.to_saved())),
        lambda bar: estimate_features(
            ws, info.name, proxy=proxy, config=config, runtime=runtime, on_progress=bar
        ),
        cancel="Nothing was computed.",
        again="Estimate the time",
    )
    if found is None:
        return
    first, tokens, *advice = found.lines()
    (st.warning if found.gpu_work else st.info)(
        md(f"Computing the features takes {first}."), icon=":material/schedule:"
    )
    st.caption(md(tokens[0].upper() + tokens[1:] + "."))
    for line in advice:
        st.caption(md(line[0].upper() + line[1:] + "."))


# How the cached functions' arguments are keyed: a workspace by its folder; a feature set
# by its folder, which names the workspace, the dataset and the key of its contents and
# settings. (A DatasetInfo is hashed field by field: its fingerprint names its contents.)
HASH_FUNCS: dict[type, Callable[[Any], Any]] = {
    Workspace: lambda ws: str(ws.root.resolve()),
    FeatureSet: lambda fs: (str(fs.folder.resolve()), fs.key),
}


@st.cache_data(show_spinner=False, max_entries=32)
def meta_fields(info: DatasetInfo) -> list[str]:
    """The fields kept in the records' meta (diversity.meta_fields), read once per dataset
    contents."""
    return diversity.meta_fields(info.path)


def space_page(page: FeaturePage, space: str) -> FeaturePage | None:
    """`page` in the map's `space` (maps.space_request): its features those of the space
    (computed on demand: `features_or_button`); None while they are missing."""
    proxy, config = maps.space_request(space, page.proxy, page.config)
    fs = features_or_button(page.ws, page.info, space=space)
    return None if fs is None else replace(page, proxy=proxy, config=config, features=fs)


def _of_space(label: str, page: FeaturePage) -> str:
    """A progress label, naming the space when the page's features are not gradients (two
    spaces' computations on one page need labels, and Cancel buttons, of their own)."""
    method = page.features.config.method
    return label if method in METHODS or method == FILE else f"{label} ({method} embeddings)"


def clusters(page: FeaturePage, k: int) -> np.ndarray | None:
    """The cluster of each row of the active dataset: spherical k-means with `k` clusters
    of its features, seeded by the feature settings (maps.clusters_for, stored beside the
    features), kept for every session, with progress and a Cancel. None while cancelled."""
    ws, info, fs, seed = page.ws, page.info, page.features, page.config.seed
    return computed(
        _of_space("Clustering", page),
        ("clusters", str(ws.root), info.name, info.fingerprint, fs.key, seed, k),
        lambda bar: maps.clusters_for(fs, k=k, seed=seed, on_progress=bar).labels,
        cancel="Nothing was stored.",
        again="Cluster again",
    )


def map_clusters(
    page: FeaturePage, k: int, sparse_below: float = 50.0
) -> tuple[np.ndarray, list[dict[str, Any]]] | None:
    """The map's clusters: (the cluster of each row, `clusters(page, k)`; one row per
    cluster, maps.describe: size, sparse below the percentile `sparse_below`, G-Vendi,
    keywords, examples), each kept like the clusters. None while either is cancelled."""
    ws, info, fs, seed = page.ws, page.info, page.features, page.config.seed
    labels = clusters(page, k)
    if labels is None:
        return None
    described = computed(
        _of_space("Describing the clusters", page),
        ("described", str(ws.root), info.name, info.fingerprint, fs.key, seed, k, sparse_below),
        lambda bar: maps.describe(
            ws,
            info.name,
            fs,
            maps.clusters_for(fs, k=k, seed=seed),  # stored by `clusters`
            sparse_below=sparse_below,
            on_progress=bar,
        ),
        cancel="The clustering is kept; its descriptions were not.",
        again="Describe the clusters again",
    )
    return None if described is None else (labels, described)


def disagreement(
    pages: tuple[FeaturePage, FeaturePage], labels: tuple[np.ndarray, np.ndarray], k: int
) -> dict[str, Any] | None:
    """Where the two spaces of the map disagree (core/disagreement.py) for the pages of the
    spaces ("gradient", then "sentence") and their clusters (`k` of each), kept for every
    session, with progress and a Cancel. None while cancelled."""
    (one, two), info = pages, pages[0].info
    spaces = [
        Space(name, page.features, rows)
        for name, page, rows in zip(SPACES, pages, labels, strict=True)
    ]
    features = (one.features.key, two.features.key)
    return computed(
        "Comparing the spaces",
        (
            "disagreement",
            str(one.ws.root),
            info.name,
            info.fingerprint,
            features,
            one.config.seed,
            k,
        ),
        lambda bar: find_disagreement(*spaces, on_progress=bar),
        cancel="Nothing was stored.",
        again="Compare the spaces again",
    )


def remembered(ws: Workspace, group: str, defaults: dict[str, Any]) -> Callable[[], None]:
    """Widget values kept in the workspace (so a browser refresh keeps them): puts the saved
    values (else `defaults`) into the session for the widget keys not shown yet, and returns
    the on_change callback that saves them. The widgets take no value of their own."""
    saved = json.loads(ws.get_meta(group) or "{}")
    for key, default in defaults.items():
        if key not in st.session_state:
            st.session_state[key] = saved.get(key, default)

    def save() -> None:
        ws.set_meta(group, json.dumps({k: st.session_state.get(k) for k in defaults}))

    return save


def attempt(action: Callable[[], Any]) -> Any:
    """Run `action`; show a UserError (or a dataset's files vanishing under it, deleted by
    another tab or command) as st.error and return None instead of raising."""
    try:
        return action()
    except UserError as e:
        st.error(md(e), icon=":material/error:")
    except FileNotFoundError as e:
        vanished = dataset_vanished(e, _root())
        if vanished is None:
            raise
        st.error(md(vanished), icon=":material/error:")
    return None


def show_report(report: Report | dict[str, Any]) -> None:
    """The validation report: counts, lengths, duplicates, skipped rows with reasons."""
    r = report if isinstance(report, dict) else report.to_dict()
    cols = st.columns(4)
    cols[0].metric("Rows read", f"{r['rows_read']:,}")
    cols[1].metric("Kept", f"{r['kept']:,}")
    cols[2].metric("Skipped", f"{r['skipped']:,}")
    cols[3].metric("Exact duplicates", f"{r['duplicates']:,}")
    for note in r["notes"]:
        st.caption(f"Note: {md(note)}")
    stats = {k: r[k] for k in ("prompt_chars", "response_chars") if r[k]}
    if stats:
        st.caption("Lengths in characters")
        st.dataframe(
            {"": ["prompt", "response"][: len(stats)], **_transpose(stats)},
            hide_index=True,
            width="content",
        )
    if r["skipped"]:
        reasons = ", ".join(f"{md(k)}: {v}" for k, v in r["skip_reasons"].items())
        st.warning(f"{r['skipped']:,} rows skipped ({reasons}). The first {len(r['skips'])}:")
        st.dataframe(r["skips"], hide_index=True)
    if r["duplicates"]:
        st.caption("Repeated rows (first listed):")
        st.dataframe(r["duplicate_examples"], hide_index=True)


def subsets_table(subsets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The subsets a selection compared (core.selection.select_curated), one row each:
    chosen mark, subset, and G-Vendi in each space (mean ± sd for the random draws)."""
    rows = []
    for s in subsets:
        row = {"chosen": "✓" if s["chosen"] else "", "subset": s["subset"]}
        if "draws" in s:
            row["subset"] += f" ({s['draws']} draws)"
        for space, value in s["g_vendi"].items():
            spread = f" ± {s['sd'][space]:.2f}" if "sd" in s else ""
            row[f"G-Vendi, {space} space"] = f"{value:.2f}{spread}"
        rows.append(row)
    return rows


def _transpose(stats: dict[str, dict[str, float]]) -> dict[str, list[float]]:
    keys = ("min", "median", "mean", "p95", "max")
    return {k: [round(s[k], 1) for s in stats.values()] for k in keys}


def save_upload(ws: Workspace, name: str, data: bytes) -> Path:
    """Keep an uploaded file under the workspace's tmp/, named by content, for this server process."""
    digest = hashlib.blake2b(data, digest_size=8).hexdigest()
    folder = ws.root / "tmp" / f"upload-{digest}"
    path = folder / Path(name).name
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "owner").write_text(str(os.getpid()))
        atomic_write(path, data)
    return path


class _NotCached(Exception):
    """The result is not in the cache yet (never seen by a page)."""


@st.cache_resource(show_spinner=False, max_entries=256)
def _results(
    key: tuple,  # noqa: ARG001 - the cache key: Streamlit hashes it, a store never reads it
    _value: Any = None,
    _store: bool = False,
) -> Any:
    """Streamlit's resource cache used as a store: gives the result kept for `key` (the
    same object to every rerun and session: a data cache would copy a million labels on
    each); on a miss raises _NotCached (an exception caches nothing), unless `_store`,
    when `_value` is kept (`_value` is not hashed: `key` names it). An array kept is made
    read-only, so no page can change what the others see."""
    if not _store:
        raise _NotCached
    if isinstance(_value, np.ndarray):
        _value.flags.writeable = False
    return _value


def computed(
    label: str,
    key: tuple,
    compute: Callable[[ProgressFn], Any],
    *,
    cancel: str,
    again: str,
    unit: str = "",
    asked: bool = False,
) -> Any:
    """The result of `compute(on_progress)` for `key`, which names everything the result
    depends on (workspace, dataset contents, settings): computed once, kept in Streamlit's
    resource cache and given to every session. Only a computation shows anything: `label` with a
    progress bar and a Cancel button (`progress`; `cancel` says what a cancel keeps). A
    cancelled computation does not start again by itself: a button labelled `again` stands
    in its place until clicked, or until the page's own button asks for it (`asked`). A
    UserError is shown (st.error); None then, and while cancelled. `label` and `again` are
    Markdown: escape data in them with `md`."""
    try:
        return _results(key)
    except _NotCached:
        pass
    stopped = st.session_state.setdefault("cancelled_keys", {})
    if st.session_state.get(f"cancel-{label}"):  # progress(label)'s Cancel was just clicked
        stopped[label] = key
    if asked:
        stopped.pop(label, None)
    if stopped.get(label) == key:
        if not st.button(again, key=f"again-{label}", icon=":material/play_arrow:"):
            return None
        del stopped[label]
    with progress(label, unit, cancel=cancel) as bar:
        result = attempt(lambda: compute(bar))
    if result is not None:
        _results(key, _value=result, _store=True)
    return result
