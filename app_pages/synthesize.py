"""Synthesize: fill the thin clusters with an LLM, keep what lands there, review the decisions."""

import os

import pandas as pd
import streamlit as st

import ui
from core import filled, prompts, synthesis
from core.encoders import encoder_for
from core.errors import UserError
from core.llm import LLMSettings, check_connection
from core.regions import default_k
from core.workspace import Workspace

page = ui.feature_page(
    "Synthesize",
    "Prismatic Synthesis: new problems from few-shot exemplars of the thin clusters, several solutions "
    "each with a majority vote, and only the samples whose gradients land in an under-represented "
    "cluster are kept. Any OpenAI-compatible endpoint works (vLLM, SGLang, Ollama, OpenAI).",
)
ws, info, fs = page.ws, page.info, page.features

# --- targets --------------------------------------------------------------------------------------
st.subheader("1. Targets")
k = default_k(info.rows)
mode = st.segmented_control(
    "Targets",
    ["Sparse clusters (auto)", "Clusters of the map", "A saved selection"],
    default="Sparse clusters (auto)",
    key="syn_mode",
    label_visibility="collapsed",
)
clusters, selection = (), None
if mode == "Clusters of the map":
    _, described = ui.map_clusters(page, k) or (None, [])
    labels = {
        c[
            "id"
        ]: f"{c['id']}{' ★' if c['sparse'] else ''} · {c['size']} samples · {', '.join(c['keywords'][:4])}"
        for c in described
    }
    clusters = tuple(
        st.multiselect(
            "Clusters to fill (★ sparse)", list(labels), format_func=labels.get, key="syn_clusters"
        )
    )
elif mode == "A saved selection":
    saved = [s["name"] for s in ws.selections(info.name)]
    if saved:
        selection = st.selectbox("Selection", saved, key="syn_selection")
    else:
        st.info("No saved selections yet: make one on the Map page.")
else:
    st.caption(
        "Each round targets the clusters smaller than the median cluster size, the thinnest first."
    )

# --- generator and loop ------------------------------------------------------------------------------
st.subheader("2. Generator")
Syn = synthesis.SynthesisSettings
# the widgets of settings fields: their defaults, ranges and help come from the field
SETTINGS = {
    "syn_target": (Syn, "target"),
    "syn_rounds": (Syn, "rounds"),
    "syn_solutions": (Syn, "solutions"),
    "syn_conc": (LLMSettings, "concurrency"),
    "syn_verifier": (Syn, "verifier"),
    "syn_maxreq": (LLMSettings, "max_requests"),
    "syn_maxtok": (LLMSettings, "max_tokens_total"),
    "syn_pin": (LLMSettings, "price_in"),
    "syn_pout": (LLMSettings, "price_out"),
    "syn_cap": (Syn, "cap"),
}
save = ui.remembered(
    ws,
    "generator_settings",
    {
        "syn_url": "http://127.0.0.1:8000/v1",
        "syn_model": "",
        **{key: ui.setting_default(*field) for key, field in SETTINGS.items()},
    },
)  # everything but the API key, which stays in this browser session only
cols = st.columns([3, 2, 2])
base_url = cols[0].text_input(
    "Base URL",
    key="syn_url",
    on_change=save,
    help="vLLM / SGLang / llama.cpp: http://host:port/v1 · Ollama: http://127.0.0.1:11434/v1 · OpenAI: https://api.openai.com/v1",
)
model = cols[1].text_input(
    "Model", key="syn_model", on_change=save, placeholder="Qwen/Qwen2.5-72B-Instruct"
)
api_key = cols[2].text_input(
    "API key",
    type="password",
    key="syn_key",
    help="Kept in this browser session only, never written to disk. Empty: "
    "the server's OPENAI_API_KEY, if set.",
)


def number(where, label: str, key: str):
    """The number widget of a settings field (SETTINGS[key])."""
    return ui.setting_input(where, label, *SETTINGS[key], key=key, on_change=save)


cols = st.columns(5)
target = number(cols[0], "Samples wanted", "syn_target")
rounds = number(cols[1], "Rounds", "syn_rounds")
solutions = number(cols[2], "Solutions per problem", "syn_solutions")
concurrency = number(cols[3], "Requests at once", "syn_conc")
verifier = ui.setting_choice(
    cols[4].selectbox,
    "Answers agree by",
    *SETTINGS["syn_verifier"],
    key="syn_verifier",
    on_change=save,
)
with st.expander("Budget, prices and limits"):
    # the budgets and the cap take 0 for "none"
    cols = st.columns(5)
    max_requests = number(cols[0], "Max requests (0: none)", "syn_maxreq")
    max_tokens = number(cols[1], "Max tokens (0: none)", "syn_maxtok")
    price_in = number(cols[2], "$ per 1M prompt tokens", "syn_pin")
    price_out = number(cols[3], "$ per 1M completion tokens", "syn_pout")
    cap = number(cols[4], "Max accepted per cluster and round (0: none)", "syn_cap")


def generator() -> LLMSettings:
    """The generator settings of the widgets (a UserError names what is wrong)."""
    return LLMSettings(
        base_url=base_url.strip(),
        model=model.strip(),
        api_key=api_key or os.environ.get("OPENAI_API_KEY"),
        concurrency=concurrency,
        price_in=price_in,
        price_out=price_out,
        max_requests=max_requests,
        max_tokens_total=max_tokens,
    )


if st.button(
    "Test connection",
    icon=":material/network_check:",
    disabled=not model,
    help="One tiny request (one token) to the endpoint with this model and key.",
):
    with st.spinner("Asking the model for one token..."):
        reply = ui.attempt(lambda: check_connection(generator()))
    if reply is not None:
        st.success(f"The endpoint answers. The model replied: {ui.md(reply) or '(nothing)'}")
with st.expander("Prompt templates"):
    current = prompts.load_templates(ws)
    generate = st.text_area(
        "Problem generation ({exemplars}, {count}, {n})",
        current["generate"],
        height=220,
        key="tpl_generate",
    )
    solve = st.text_area("Solution ({problem})", current["solve"], height=100, key="tpl_solve")
    cols = st.columns([1, 1, 4])
    if cols[0].button("Save templates") and ui.attempt(
        lambda: prompts.save_templates(ws, {"generate": generate, "solve": solve}) or True
    ):
        st.success("Saved; new runs use them.")
    if cols[1].button("Restore the defaults"):
        prompts.save_templates(ws, dict(prompts.DEFAULT_TEMPLATES))
        for key in ("tpl_generate", "tpl_solve"):
            st.session_state.pop(key, None)
        st.rerun()


# --- what a run filled ---------------------------------------------------------------------------------
@st.cache_data(
    show_spinner="Measuring what the run filled...", max_entries=16, hash_funcs=ui.HASH_FUNCS
)
def fill(ws: Workspace, run_id: str, decisions: tuple) -> dict:  # noqa: ARG001 (decisions: the key)
    """filled.fill_table of a run, once per state of its items' decisions."""
    return filled.fill_table(ws, run_id)


def show_fill(table: dict, *, live: bool = False) -> None:
    """What a run filled (filled.fill_table): the whole set's G-Vendi before and after, at
    equal size, and one row per cluster of the map. `live`: a run in progress, whose table
    has no equal-size draws (they are measured once it is done)."""
    whole, equal = table["whole"], table["whole"]["equal_size"]
    c = st.columns(3)
    c[0].metric(
        "G-Vendi of the seed",
        f"{whole['g_vendi_before']:.2f}",
        help=f"{whole['rows_before']:,} seed rows.",
    )
    c[1].metric(
        "With the accepted samples",
        f"{whole['g_vendi_after']:.2f}",
        delta=f"{whole['gain']:+.2f}",
        help=f"{whole['rows_after']:,} rows: the seed and every sample accepted so far "
        "(overrides applied). Part of any gain comes from the larger size.",
    )
    if equal:
        c[2].metric(
            "At equal size",
            f"{equal['mean']:.2f} ± {equal['sd']:.2f}",
            delta=f"{equal['gain']:+.2f} beyond size",
            help=f"{equal['rows']:,} rows: the seed with {equal['swapped']} random rows swapped "
            f"for the {equal['swapped']} accepted samples (mean ± sd of {equal['repeats']} "
            "draws), against the seed itself. Above zero: the accepted samples add more than "
            "as many rows of the data would.",
        )
    else:
        why = (
            "Measured once the run is done" if live else f"Not measured: {whole['equal_size_note']}"
        )
        c[2].metric("At equal size", "-", help=f"{why}.")
    frame = pd.DataFrame(
        [
            {
                "cluster": "none" if r["cluster"] is None else str(r["cluster"]),
                "sparse": r["sparse"],
                "size before": r["size_before"],
                "made for it": r["made_for"],
                "accepted into it": r["accepted"],
                "rejected": r["rejected_total"],
                "pending": r["pending"],
                "size after": r["size_after"],
                "G-Vendi before": r["g_vendi_before"],
                "G-Vendi after": r["g_vendi_after"],
                "rejections": ", ".join(f"{k}: {v}" for k, v in r["rejected"].items()),
            }
            for r in table["clusters"]
        ]
    )
    st.dataframe(
        frame,
        hide_index=True,
        column_config={
            "G-Vendi before": st.column_config.NumberColumn(format="%.2f"),
            "G-Vendi after": st.column_config.NumberColumn(format="%.2f"),
            "rejections": st.column_config.TextColumn("rejections", width="large"),
        },
    )
    counts = table["counts"]
    st.caption(
        f"The map's clusters (k = {table['k']}). Each of the run's {counts['items']} items is in "
        "one row: an accepted sample where its gradients landed, any other item in the cluster it "
        "was made for. G-Vendi after adds a cluster's accepted samples to its seed rows."
    )


# --- running -----------------------------------------------------------------------------------------
def run_live(run_id: str) -> None:
    """Run (or resume) a run with live progress; a Cancel click stops it, resumable."""
    target_count = synthesis.run_info(ws, run_id)["settings"]["synthesis"]["target"]
    cancel = ui.cancel_button(
        f"cancel_{run_id}",
        "The run keeps everything finished so far; resume it from the list below.",
    )
    bar = st.progress(0.0, text=f"Run {run_id}: starting...")
    cards = st.empty()
    so_far = st.empty()  # what the run filled so far; the review below shows it afterwards

    def update(summary: dict) -> None:
        accepted = summary["accepted"]
        bar.progress(
            min(accepted / target_count, 1.0),
            text=f"Run {run_id}: {summary.get('stage', summary['state'])} · {accepted} accepted, {target_count} wanted",
        )
        with cards.container():
            c = st.columns(5)
            c[0].metric("Accepted", accepted)
            c[1].metric("Rejected", sum(summary["rejected"].values()))
            c[2].metric("Requests sent", summary["counts"]["requests_sent"])
            c[3].metric(
                "G-Vendi before",
                f"{summary['g_vendi_before']:.2f}" if summary["g_vendi_before"] else "-",
            )
            c[4].metric(
                "G-Vendi now",
                f"{summary['g_vendi_after']:.2f}" if summary["g_vendi_after"] else "-",
            )
        try:  # no equal-size draws at each stage's end: they would hold the run up
            table = filled.fill_table(ws, run_id, repeats=0)
        except UserError:  # the run's features are gone: the run itself will say so
            return
        with so_far.container():
            st.markdown("**What the run filled so far**")
            show_fill(table, live=True)

    key = api_key or os.environ.get("OPENAI_API_KEY")
    done = ui.attempt(lambda: synthesis.run_synthesis(ws, run_id, api_key=key, on_update=update))
    cancel.empty()
    so_far.empty()
    if not done:
        return  # ui.attempt showed why (a failed run: resume it below)
    said = f"Run {run_id} {done['state']}: {done['accepted']} accepted."
    failed = done["counts"]["requests_failed"]
    notes = [done["note"]] if done.get("note") else []
    if failed:
        notes.append(f"{failed} requests failed; their items in the review say why")
    if notes:
        st.warning(ui.md(f"{said} {'; '.join(notes)}."))
    else:
        st.success(f"{said} Review the decisions below.")


st.subheader("3. Run")
no_proxy = encoder_for(page.proxy, page.config).unavailable()  # imported vectors
if no_proxy:
    st.warning(ui.md(no_proxy[0].upper() + no_proxy[1:] + "."), icon=":material/info:")
if st.button(
    "Start a run",
    type="primary",
    icon=":material/play_arrow:",
    disabled=bool(no_proxy)
    or not model
    or (mode == "Clusters of the map" and not clusters)
    or (mode == "A saved selection" and not selection),
):

    def start() -> str:
        llm = generator()
        settings = synthesis.SynthesisSettings(
            clusters=clusters,
            selection=selection,
            target=target,
            rounds=rounds,
            solutions=solutions,
            verifier=verifier,
            cap=cap,
            k=k,
        )
        return synthesis.create_run(
            ws,
            info.name,
            llm=llm,
            settings=settings,
            proxy=page.proxy,
            config=page.config,
            runtime=page.runtime,
        )

    run_id = ui.attempt(start)
    if run_id:
        st.session_state["syn_review_run"] = run_id  # the review below opens on this run
        run_live(run_id)

# --- runs and review -----------------------------------------------------------------------------------
runs = synthesis.list_runs(ws, info.name)
if not runs:
    st.caption("No runs yet.")
    st.stop()
st.subheader("Runs")
table = pd.DataFrame(
    [
        {
            "run": r["id"],
            "state": r["state"],
            "accepted": r["counts"]["accepted"],  # from the items, overrides applied
            "rejected": r["counts"]["rejected_total"],
            "G-Vendi before": r["g_vendi_before"],
            "G-Vendi after": r["g_vendi_after"],
            "model": r["settings"]["llm"]["model"],
            "targets": ",".join(map(str, r["settings"]["synthesis"]["clusters"]))
            or r["settings"]["synthesis"]["selection"]
            or "auto",
            "error": r["error"],
        }
        for r in runs
    ]
)
st.dataframe(
    table,
    hide_index=True,
    column_config={
        "G-Vendi before": st.column_config.NumberColumn(format="%.2f"),
        "G-Vendi after": st.column_config.NumberColumn(format="%.2f"),
    },
)
ids = [r["id"] for r in runs]
if st.session_state.get("syn_review_run") not in ids:
    st.session_state["syn_review_run"] = ids[0]  # the newest
chosen = st.selectbox("Review run", ids, key="syn_review_run")
info_run = synthesis.run_info(ws, chosen)
if info_run["state"] in ("interrupted", "cancelled", "failed", "budget", "created") and st.button(
    "Resume this run",
    icon=":material/resume:",
    help="Finished requests are answered from the run's log.",
):
    run_live(chosen)
    info_run = synthesis.run_info(ws, chosen)

items = synthesis.review(ws, chosen)
if items:
    st.subheader("What the run filled")
    table = ui.attempt(
        lambda: fill(ws, chosen, tuple((i["item_id"], i["decision"]) for i in items))
    )
    if table:
        show_fill(table)
    st.subheader("Review")
    if rejected := info_run["counts"]["rejected"]:
        st.caption("Rejections: " + ui.md(", ".join(f"{k}: {v}" for k, v in rejected.items())))
    frame = pd.DataFrame(
        [
            {
                "item": i["item_id"],
                "decision": i["override"] or "auto",
                "status": i["status"],
                "round": i["round"],
                "target": i["target_cluster"],
                "landed": i["landed_cluster"],
                "reason": i["reason"] or "",
                "answers": ", ".join(a or "-" for a in i["answers"]),
                "problem": i["problem"][:300],
                "solution": (i["response"] or "")[:300],
            }
            for i in items
        ]
    )
    edited = st.data_editor(
        frame,
        hide_index=True,
        key=f"review_{chosen}",
        disabled=[c for c in frame.columns if c != "decision"],
        column_config={
            "decision": st.column_config.SelectboxColumn(
                "decision",
                options=["auto", "accepted", "rejected"],
                required=True,
                help="auto: the loop's decision (status); or override it.",
            ),
            "reason": st.column_config.TextColumn("reason", width="medium"),
            "problem": st.column_config.TextColumn("problem", width="large"),
        },
    )
    changed = edited[edited["decision"] != frame["decision"]]
    for _, row in changed.iterrows():
        ui.attempt(
            lambda row=row: synthesis.set_decision(
                ws, chosen, row["item"], None if row["decision"] == "auto" else row["decision"]
            )
        )
    if len(changed):
        st.rerun()
    kept = info_run["counts"]["accepted"]  # as in the Runs table; a change reran above
    st.caption(f"{kept} samples of this run go to the curated set (with overrides).")
