"""The analytics pages in a real headless Chromium (Debian's `chromium`, driven by Playwright).

Logs in through the admin's login form, opens a finished batch's dashboard and one of its runs,
checks that every chart drew (an SVG with marks in it), that the replay scrubber hides later rounds,
that the dashboard of a running batch updates itself when a run finishes, and that the browser
logged no console error. Screenshots go to test-output/browser/. `make test` installs chromium;
Playwright's own browser download is never used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from negotiation.models import Batch, NegotiationRun
from tests.conftest import OUTPUT

CHROMIUM = os.environ.get("MAMS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = OUTPUT / "browser"

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason=f"no chromium at {CHROMIUM}: `make test` installs it "
                                        "(MAMS_WITH_BROWSER=1 deploy/local/stack.sh setup)")]


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still
    # plain synchronous code (Django's documented escape hatch for this case).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()
        # Code under Playwright's sync API runs in a greenlet with its own context, so the ORM
        # opened a connection of its own there; close it, or the test database cannot be dropped.
        from django.db import connections

        connections.close_all()


@pytest.fixture
def page(browser: Any, live_server: Any, user: Any) -> Iterator[Any]:
    user.set_password("pw-for-the-browser")
    user.save()
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.errors = []
    pg.on("console", lambda msg: pg.errors.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None)
    pg.on("pageerror", lambda exc: pg.errors.append(f"page error: {exc}"))
    pg.goto(f"{live_server.url}/analytics/")  # the pages send a visitor to their sign-in form
    pg.fill("#id_username", user.username)
    pg.fill("#id_password", "pw-for-the-browser")
    pg.click("button[type=submit]")
    pg.wait_for_url(f"{live_server.url}/analytics/")
    yield pg
    context.close()


def drawn_charts(pg: Any) -> list[dict[str, Any]]:
    return pg.eval_on_selector_all("svg.chart", """els => els.map(e => ({
        label: e.getAttribute('aria-label'),
        marks: e.querySelectorAll('rect.bar, circle, line.series').length,
        width: e.getBoundingClientRect().width, height: e.getBoundingClientRect().height}))""")


def test_dashboard_and_run_page_draw_their_charts_without_errors(page: Any, live_server: Any,
                                                                  played_batch: Any) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    batch = played_batch(runs=4)
    from analytics.analysis import run_analyse

    for run_id in NegotiationRun.objects.filter(batch=batch).values_list("pk", flat=True):
        run_analyse(run_id=run_id)
    # the dashboard
    page.goto(f"{live_server.url}/analytics/batches/{batch.pk}/")
    page.wait_for_selector("svg.chart")
    charts = drawn_charts(page)
    assert len(charts) >= 9 and all(c["width"] > 100 and c["height"] > 50 for c in charts)
    drawn = {c["label"]: c["marks"] for c in charts}
    for label in ("Final prices of deals", "Rounds to close (runs per number of rounds)", "Deals won per seller",
                  "Deal quality", "Coherence"):
        assert drawn[label] > 0, (label, drawn)
    assert page.locator(".card").count() >= 16 and "95% CI" in page.inner_text(".cards")
    page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)
    # a run, from the runs table
    page.click("table.runs tbody tr:first-child td:first-child a")
    page.wait_for_selector("#offers-chart svg.chart")
    offers = drawn_charts(page)[0]
    assert offers["marks"] > 0
    lanes = page.locator(".lane-head").all_inner_texts()
    assert lanes[0] == "What the buyer saw" and len(lanes) == 5
    last = int(page.get_attribute("#replay-round", "max"))
    if last > 1:
        page.fill("#replay-round", "1")  # scrub back to round 1
        page.dispatch_event("#replay-round", "input")
        assert page.locator(".lane-cell.future").count() > 0 and not page.is_visible("#outcome")
        page.fill("#replay-round", str(last))
        page.dispatch_event("#replay-round", "input")
        assert page.locator(".lane-cell.future").count() == 0 and page.is_visible("#outcome")
    page.screenshot(path=str(SHOTS / "run.png"), full_page=True)
    assert page.errors == []


def test_a_running_batch_dashboard_updates_itself(page: Any, live_server: Any, played_batch: Any) -> None:
    # given a batch whose last run is still running
    batch = played_batch(runs=3)
    run = NegotiationRun.objects.filter(batch=batch).order_by("seed").last()
    NegotiationRun.objects.filter(pk=run.pk).update(status="running")
    Batch.objects.filter(pk=batch.pk).update(status="running")
    page.goto(f"{live_server.url}/analytics/batches/{batch.pk}/")
    assert "2 of 3 runs finished" in page.inner_text("#progress-text")
    # when the run finishes
    NegotiationRun.objects.filter(pk=run.pk).update(status="completed")
    Batch.objects.filter(pk=batch.pk).update(status="completed")
    # then the page shows it without a reload
    page.wait_for_function("document.getElementById('progress-text').innerText.includes('3 of 3 runs finished')",
                           timeout=15000)
    assert page.inner_text("#batch-status") == "completed"
    assert page.errors == []


def test_compare_and_session_pages_render_cleanly(page: Any, live_server: Any, played_batch: Any) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    a = played_batch(runs=3, agents={"buyer": {"strategy": "linear"}, "seller": {"strategy": "linear"},
                                     "analyst": {"strategy": "linear"}})
    b = played_batch(runs=3, agents={"buyer": {"strategy": "boulware"}, "seller": {"strategy": "linear"},
                                     "analyst": {"strategy": "linear"}})
    page.goto(f"{live_server.url}/analytics/compare/?a={a.pk}&b={b.pk}")
    assert "3 pairs of completed runs, paired by seed" in page.inner_text("main")
    assert drawn_charts(page)[0]["marks"] > 0
    page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)
    page.goto(f"{live_server.url}/analytics/sessions/{a.session_id}/")
    assert page.locator("form.launch button.primary[type=submit]").is_visible()
    assert page.locator("form.launch #launch-estimate-button").is_visible()
    page.screenshot(path=str(SHOTS / "session.png"), full_page=True)
    assert page.errors == []


# --- every page at a desktop and a phone width --------------------------------------------------

WIDTHS = (1400, 400)
MIN_TYPE_PX = 11  # at 1400 px, every chart text renders at least this large


def page_problems(pg: Any, width: int) -> list[str]:
    """What the browser shows that a reader would trip over: a page wider than the window, a chart with
    no axis titles, chart text cut off at the chart's edge, chart type smaller than MIN_TYPE_PX (at 1400 px)."""
    out = []
    over = pg.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    if over > 0:
        wide = pg.evaluate("""() => [...document.querySelectorAll('main *')].filter(e =>
            e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.table-wrap, .lanes'))
            .slice(0, 3).map(e => e.tagName + '.' + e.className)""")
        out.append(f"page is {over} px wider than the {width} px window (widest: {wide})")
    if pg.evaluate("(h => h ? h.scrollWidth > h.clientWidth : false)(document.querySelector('header.top'))"):
        out.append("the navigation is cut off")
    charts = pg.eval_on_selector_all("svg.chart", """els => els.map(e => {
        const scale = e.getBoundingClientRect().width / e.viewBox.baseVal.width;
        const sizes = [...e.querySelectorAll('text')].map(t => parseFloat(getComputedStyle(t).fontSize) * scale);
        return {label: e.getAttribute('aria-label'), empty: !!e.querySelector('text.empty'),
                x: e.querySelectorAll('text.axis-title.x').length, y: e.querySelectorAll('text.axis-title.y').length,
                smallest: sizes.length ? Math.min(...sizes) : null,
                clipped: (box => [...e.querySelectorAll('text')].filter(t => {
                    const b = t.getBoundingClientRect();  // rotated titles included
                    return b.left < box.left - 1 || b.right > box.right + 1 || b.top < box.top - 1
                        || b.bottom > box.bottom + 1; }).map(t => t.textContent).slice(0, 3)
                )(e.getBoundingClientRect())};
    })""")
    for c in charts:
        if not c["empty"] and not (c["x"] and c["y"]):
            out.append(f"chart {c['label']!r} lacks an axis title (x: {c['x']}, y: {c['y']})")
        if c["clipped"]:
            out.append(f"chart {c['label']!r} cuts off its text {c['clipped']}")
        if width >= 1400 and c["smallest"] is not None and c["smallest"] < MIN_TYPE_PX:
            out.append(f"chart {c['label']!r} has {c['smallest']:.1f} px type")
    return out


def test_every_page_fits_and_reads_at_1400_and_400_px(browser: Any, live_server: Any, user: Any,
                                                      played_batch: Any, play_through: Any) -> None:
    """Each page, at each width: no sideways scroll of the page, no request off this machine, no console
    error, every chart with both axis titles and (at 1400 px) type of at least 11 px."""
    from urllib.parse import urlsplit

    from analytics import archive
    from analytics.analysis import run_analyse
    from analytics.benchmarks.replication import replication_launch
    from negotiation.models import Message, SequenceStep
    from negotiation.services import voice
    from negotiation.services.experiments import experiment_create
    from negotiation.services.reflect import sequence_create, sequence_step_reflect
    from tests.analytics.benchmark_helpers import BOULWARE, LINEAR, launch, play_all
    from tests.analytics.conftest import BASELINE

    SHOTS.mkdir(parents=True, exist_ok=True)
    # given one of everything the pages show
    user.is_staff = user.is_superuser = True  # the admin's pages too
    user.set_password("pw-for-the-browser")
    user.save()
    a = played_batch(runs=4)
    b = played_batch(runs=4, agents={**BASELINE, "buyer": {"strategy": "boulware"}})
    for run_id in NegotiationRun.objects.filter(batch=a).values_list("pk", flat=True):
        run_analyse(run_id=run_id)
    run = NegotiationRun.objects.filter(batch=a).order_by("seed").first()
    conditions = [{"label": n, "agents": {**BASELINE, "buyer": {"strategy": n}}} for n in ("boulware", "conceder")]
    experiment = experiment_create(owner=user, session=a.session, name="boulware vs conceder",
                                   item_name="USB-C Cable", runs=3, max_rounds=4, conditions=conditions)
    sequence = sequence_create(owner=user, session=a.session, item_name="USB-C Cable", mode="none", length=3,
                               agents=BASELINE, max_rounds=4, base_seed=2)
    for r in NegotiationRun.objects.filter(status="queued"):
        play_through(r.pk)
    for index in range(3):  # each step's run is created once the previous one is reflected on
        run_id = SequenceStep.objects.get(sequence=sequence, index=index).run_id
        play_through(run_id)
        sequence_step_reflect(run_id=run_id)
    play_all(launch(buyers=[BOULWARE, LINEAR], opponents=LINEAR), play_through)
    # the merged features: core-v2 with its exploit canaries (reference rows, Holm notes), a replication
    # suite's page, archived runs (the batch page's Archive column) and a run whose seller replies speak
    play_all(launch(buyers=[LINEAR], opponents=BOULWARE, suite="core-v2", canaries=True), play_through)
    replication = play_all(replication_launch(suite="negotiationarena", buyer=LINEAR, seller=BOULWARE, runs=1,
                                              owner=user), play_through)
    for run_id in NegotiationRun.objects.filter(batch=a).values_list("pk", flat=True):
        assert archive.run_archive(run_id=run_id, wait_for_audio=False).status == "archived"
    spoken = NegotiationRun.objects.filter(batch=b).order_by("seed").first()
    NegotiationRun.objects.filter(pk=spoken.pk).update(voice=True)
    for msg in Message.objects.filter(run=spoken, sender_type="seller"):
        assert voice.message_speak(message_id=msg.pk).status == "ready"
    pages = {
        "batches": "/analytics/", "batch": f"/analytics/batches/{a.pk}/", "run": f"/analytics/runs/{run.pk}/",
        "run-voice": f"/analytics/runs/{spoken.pk}/",
        "compare": f"/analytics/compare/?a={a.pk}&b={b.pk}", "leaderboard": "/analytics/leaderboard/",
        "leaderboard-core-v2": "/analytics/leaderboard/?suite=core-v2",
        "replication": f"/analytics/replications/{replication.pk}/",
        "sessions": "/analytics/sessions/", "session": f"/analytics/sessions/{a.session_id}/",
        "experiments": "/analytics/experiments/", "experiment": f"/analytics/experiments/{experiment.pk}/",
        "sequences": "/analytics/sequences/", "sequence": f"/analytics/sequences/{sequence.pk}/",
        "admin": "/admin/", "admin-runs": "/admin/negotiation/negotiationrun/",
        "admin-batches": "/admin/negotiation/batch/", "api-docs": "/api/docs/",
        "api-redoc": "/api/redoc/",  # leads to Swagger UI
    }
    problems: list[str] = []
    for width in WIDTHS:
        context = browser.new_context(viewport={"width": width, "height": 900})
        pg = context.new_page()
        seen: list[str] = []
        pg.on("console", lambda m, s=seen: s.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        pg.on("pageerror", lambda exc, s=seen: s.append(f"page error: {exc}"))

        def off_machine(request: Any, s: list[str] = seen) -> None:
            url = urlsplit(request.url)
            if url.scheme not in ("data", "blob", "about") and url.hostname not in ("127.0.0.1", "localhost", "::1"):
                s.append(f"request off this machine: {request.url}")

        pg.on("request", off_machine)
        pg.goto(f"{live_server.url}/analytics/login/")
        pg.fill("#id_username", user.username)
        pg.fill("#id_password", "pw-for-the-browser")
        pg.click("button[type=submit]")
        pg.wait_for_url(f"{live_server.url}/analytics/")
        for name, path in pages.items():
            seen.clear()
            response = pg.goto(f"{live_server.url}{path}")
            pg.wait_for_load_state("networkidle")
            assert response.status == 200, (name, width, response.status)
            pg.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
            problems += [f"{name} @{width}: {p}" for p in seen + page_problems(pg, width)]
        context.close()
    assert problems == [], "\n".join(problems)


def test_a_seller_reply_plays_in_the_browser(page: Any, live_server: Any, played_batch: Any) -> None:
    # given a played run whose seller replies were spoken (espeak-ng, in-process)
    from negotiation.models import Message
    from negotiation.services import voice

    SHOTS.mkdir(parents=True, exist_ok=True)
    batch = played_batch(runs=1, max_rounds=2)
    run = NegotiationRun.objects.get(batch=batch)
    NegotiationRun.objects.filter(pk=run.pk).update(voice=True)
    replies = list(Message.objects.filter(run=run, sender_type="seller"))
    for msg in replies:
        assert voice.message_speak(message_id=msg.pk).status == "ready"
    # when its page is opened, then each seller reply in the buyer's lane has a player the browser can decode
    page.goto(f"{live_server.url}/analytics/runs/{run.pk}/")
    players = page.locator(".msg-audio audio")
    assert players.count() == len(replies)
    seconds = page.eval_on_selector(".msg-audio audio", """a => new Promise((ok, bad) => {
        a.addEventListener('loadedmetadata', () => ok(a.duration)); a.addEventListener('error', () => bad(a.error));
        a.preload = 'metadata'; a.load(); })""")
    assert 0.3 < seconds < 30
    page.screenshot(path=str(SHOTS / "run-voice.png"), full_page=True)
    assert page.errors == []
