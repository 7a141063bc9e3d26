"""Experiments: the list of experiments, one experiment's runs table (filter, sort and pages on the server,
in the API's filter language), and the comparison of 2-10 runs (params side by side, metric charts overlaid).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse

from loopml.core.errors import InvalidInput, LoopMLError
from loopml.server.ui import charts
from loopml.server.ui.pages import Pages, bounded, caller
from loopml.tracking.records import Run
from loopml.tracking.search import count_runs, page_token, search_runs

PAGE_SIZES = (25, 50, 100, 200, 500)
MAX_COLUMNS = 40  # params and metrics columns each, taken from the page's own runs
MAX_COMPARED = 10
COMPARE_POINTS = 500  # per run and metric


def routes(app: FastAPI, pages: Pages) -> None:
    store = pages.tracker.store

    @app.get("/experiments", response_class=HTMLResponse)
    def experiment_list(request: Request) -> HTMLResponse:
        caller(request)
        activity = store.experiment_activity()
        rows = [(e, *activity.get(e.experiment_id, (0, None))) for e in store.list_experiments()]
        rows.sort(key=lambda row: row[2] or row[0].created_time, reverse=True)
        return pages.render(request, "experiments.html", section="experiments", rows=rows)

    @app.get("/experiments/{experiment}", response_class=HTMLResponse)
    def runs_table(  # noqa: PLR0917  # FastAPI reads the query parameters from the signature
        request: Request,
        experiment: str,
        filter: str = "",
        order: str = "",
        page: str = "1",
        size: str = "50",
    ) -> HTMLResponse:
        caller(request)
        found = store.get_experiment(experiment)
        per_page = bounded(size, "size", 50, 1, max(PAGE_SIZES))
        number = bounded(page, "page", 1, 1, 10**9)
        problem = ""
        runs: list[Run] = []
        total = 0
        try:
            result = search_runs(
                store,
                [found.experiment_id],
                filter or None,
                order_by=order or None,
                max_results=per_page,
                page_token=page_token((number - 1) * per_page),
            )
            runs, more = result.runs, result.next_page_token is not None
            total = count_runs(store, [found.experiment_id], filter or None)
        except InvalidInput as error:  # a bad filter or order: shown next to the box, the page still renders
            problem, more = error.message, False
        return pages.render(
            request,
            "runs.html",
            status=400 if problem else 200,
            section="experiments",
            experiment=found,
            runs=runs,
            params=_keys(runs, "params"),
            metrics=_keys(runs, "metrics"),
            filter=filter,
            order=order,
            page=number,
            size=per_page,
            sizes=PAGE_SIZES,
            more=more,
            total=total,
            problem=problem,
            sort_link=lambda kind, key: _sort_link(order, quote_key(kind, key) if kind else key),
            current=order,
        )

    @app.get("/compare", response_class=HTMLResponse)
    def compare(request: Request, run: Annotated[list[str] | None, Query()] = None) -> HTMLResponse:
        caller(request)
        run_ids = list(dict.fromkeys(run or []))  # each run once, in the order picked
        if not 2 <= len(run_ids) <= MAX_COMPARED:
            raise InvalidInput(f"pick 2 to {MAX_COMPARED} runs to compare, got {len(run_ids)}")
        runs = [store.get_run(r) for r in run_ids]
        params = sorted({k for r in runs for k in r.params})
        param_rows = [(k, [r.params.get(k) for r in runs]) for k in params]
        metrics = sorted({k for r in runs for k in r.metrics})
        metric_rows = [(k, [r.metrics.get(k) for r in runs]) for k in metrics]
        drawn = metrics[:MAX_COLUMNS]
        specs = [
            (
                key,
                charts.line(
                    [(_label(r), store.metrics.overview(r.run_id, key, COMPARE_POINTS)) for r in runs],
                    y_label=key,
                ),
            )
            for key in drawn
        ]
        return pages.render(
            request,
            "compare.html",
            section="experiments",
            runs=runs,
            param_rows=param_rows,
            metric_rows=metric_rows,
            specs=specs,
            hidden=len(metrics) - len(drawn),
            experiments={r.experiment_id: _experiment_name(pages, r.experiment_id) for r in runs},
        )


def _keys(runs: list[Run], kind: str) -> list[str]:
    found: set[str] = set()
    for run in runs:
        found.update(getattr(run, kind))
    return sorted(found)[:MAX_COLUMNS]


def _sort_link(order: str, column: str) -> str:
    """`order` for a click on `column`'s header: descending first, then ascending."""
    return f"{column} ASC" if order == f"{column} DESC" else f"{column} DESC"


def _label(run: Run) -> str:
    return f"{run.name} ({run.run_id[:7]})"


def _experiment_name(pages: Pages, experiment_id: str) -> str:
    try:
        return pages.tracker.store.get_experiment(experiment_id).name
    except LoopMLError:
        return experiment_id


def quote_key(kind: str, key: str) -> str:
    """A column as the filter language names it (backquoted when the key has other characters)."""
    plain = key.replace("_", "").replace(".", "").isalnum()
    return f"{kind}.{key}" if plain else f"{kind}.`{key}`"
