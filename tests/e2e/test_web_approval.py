"""The approval web page in headless Chromium (Debian's chromium + chromium-driver, driven by
selenium): log in with the token, open a run waiting at the gate, approve it, see it published.
Also: without the token every page and every decision is refused.

The browser is installed by this module's setup (apt-get, when missing and running as root); if
it cannot be installed the browser test is SKIPPED with the reason, never passed silently.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from storage import posts
from tests.approval_fixtures import WEB_TOKEN
from tests.server_fixtures import service_client

pytestmark = pytest.mark.slow

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# As in env's notes: without the background-networking flags Chromium keeps dialling out on a closed network.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-first-run", "--window-size=1280,1600"]


def _have_browser() -> bool:
    return all(Path(p).exists() or shutil.which(Path(p).name) for p in (CHROMIUM, CHROMEDRIVER))


def install_chromium() -> str | None:
    """apt-get install chromium chromium-driver when missing. Returns a reason when it cannot."""
    if _have_browser():
        return None
    if not shutil.which("apt-get"):
        return "chromium is missing and this machine has no apt-get"
    if os.geteuid() != 0:
        return "chromium is missing and apt-get needs root (run: sudo apt-get install chromium chromium-driver)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium", "chromium-driver"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:  # a fresh machine has no package lists yet
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True, timeout=600)
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0 or not _have_browser():
        return f"apt-get install chromium chromium-driver failed: {(out.stderr or out.stdout)[-500:]}"
    return None


@pytest.fixture(scope="module")
def browser(session_dir):
    reason = install_chromium()
    if reason:
        pytest.skip(f"no headless Chromium: {reason}")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = shutil.which("chromium") or CHROMIUM
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    profile = session_dir / f"chromium-profile-{os.getpid()}"
    opts.add_argument(f"--user-data-dir={profile}")
    service = Service(executable_path=shutil.which("chromedriver") or CHROMEDRIVER,
                      log_output=str(session_dir / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


async def _run_to_gate(server_url: str, topic: str) -> str:
    client = service_client(server_url)
    thread = await client.threads.create(metadata={"source": "web-test"})
    await client.runs.wait(thread["thread_id"], "newsroom", input={"topic": topic, "requester": "web-test", "source": "api"})
    state = await client.threads.get_state(thread["thread_id"])
    assert state["next"] == ["human_approval"]
    return thread["thread_id"]


async def test_pages_and_decisions_refuse_without_the_token(approval_server, approval_script, db):
    tid = await _run_to_gate(approval_server.url, "Refused without a token")
    base = f"{approval_server.url}/newsroom/ui"
    async with httpx.AsyncClient(timeout=30, follow_redirects=False) as http:
        listing = await http.get(base)
        assert listing.status_code == 401 and 'name=token' in listing.text and tid not in listing.text
        assert (await http.get(f"{base}/runs/{tid}")).status_code == 401
        wrong = await http.post(f"{base}/login", data={"token": "guess"})
        assert wrong.status_code == 403 and "newsroom_session" not in wrong.headers.get("set-cookie", "")
        refused = await http.post(f"{base}/runs/{tid}/decide", data={"action": "approve", "gate_id": "x"})
        assert refused.status_code == 403
        # a script may use the header; the page then shows the run and its decision form
        page = await http.get(f"{base}/runs/{tid}", headers={"Authorization": f"Bearer {WEB_TOKEN}"})
        assert page.status_code == 200 and "GQA and the KV cache" in page.text and 'id=approve' in page.text
        gate_id = page.text.split("name=gate_id value='")[1].split("'")[0]
        forged = await http.post(f"{base}/runs/{tid}/decide", data={"action": "approve", "gate_id": gate_id},
                                 headers={"Authorization": "Bearer nope"})
        assert forged.status_code == 403
        rejected = await http.post(f"{base}/runs/{tid}/decide",
                                   data={"action": "reject", "gate_id": gate_id, "reason": "scripted reject"},
                                   headers={"Authorization": f"Bearer {WEB_TOKEN}"})
        assert rejected.status_code == 303
        again = await http.post(f"{base}/runs/{tid}/decide", data={"action": "approve", "gate_id": gate_id},
                                headers={"Authorization": f"Bearer {WEB_TOKEN}"})
        assert again.status_code == 303 and again.headers["location"].endswith(f"/runs/{tid}")
        # the message travels in a signed cookie, not in the URL
        assert "Already decided" in (await http.get(approval_server.url + again.headers["location"],
                                                    headers={"Authorization": f"Bearer {WEB_TOKEN}"})).text
    for _ in range(100):
        if (await posts.get_post(db, tid))["status"] == "rejected":
            break
        await asyncio.sleep(0.05)
    assert (await posts.get_post(db, tid))["status_reason"] == "scripted reject"


async def test_a_failed_run_is_retried_from_its_page(approval_server, approval_script, db):
    """A failed run's page shows why and a Retry form; the retry (token and same origin required, as
    for decisions) reopens the post and runs it on from where it failed, to the gate."""
    from tests.engine_fixtures import WRITER
    from tests.scripted_llm import Fault

    approval_script.script(Fault.server_error(503, "model server restarting"), model=WRITER)
    client = service_client(approval_server.url)
    tid = (await client.threads.create(metadata={"source": "web-test"}))["thread_id"]
    await client.runs.wait(tid, "newsroom", input={"topic": "Failed, retried on the web", "requester": "web-test",
                                                   "source": "api"})
    assert (await posts.get_post(db, tid))["status"] == "failed"
    base, auth = f"{approval_server.url}/newsroom/ui", {"Authorization": f"Bearer {WEB_TOKEN}"}
    async with httpx.AsyncClient(timeout=30, follow_redirects=False) as http:
        page = await http.get(f"{base}/runs/{tid}", headers=auth)
        assert "id=failure" in page.text and "model server restarting" in page.text and "id=retry" in page.text
        refused = await http.post(f"{base}/runs/{tid}/retry", data={"reviewer": "eve"})
        assert refused.status_code == 403 and (await posts.get_post(db, tid))["status"] == "failed"
        cross = await http.post(f"{base}/runs/{tid}/retry", data={"reviewer": "eve"},
                                headers={**auth, "Origin": "https://evil.example"})
        assert cross.status_code == 403 and (await posts.get_post(db, tid))["status"] == "failed"
        done = await http.post(f"{base}/runs/{tid}/retry", data={"reviewer": "fay"}, headers=auth)
        assert done.status_code == 303 and "Retrying from where it failed" in (
            await http.get(approval_server.url + done.headers["location"], headers=auth)).text
        for _ in range(200):
            if (await posts.get_post(db, tid))["status"] == "awaiting_approval":
                break
            await asyncio.sleep(0.05)
        assert (await posts.get_post(db, tid))["status"] == "awaiting_approval"
        retried = [e for e in await posts.list_events(db, tid) if e["kind"] == "retry"]
        assert [e["actor"] for e in retried] == ["fay (web)"]
        again = await http.post(f"{base}/runs/{tid}/retry", data={"reviewer": "fay"}, headers=auth)
        assert "Not failed" in (await http.get(approval_server.url + again.headers["location"], headers=auth)).text
        page = await http.get(f"{base}/runs/{tid}", headers=auth)
        assert "id=retry" not in page.text and "id=approve" in page.text


async def test_approve_a_run_from_the_web_page_in_chromium(browser, approval_server, approval_script, db, session_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    tid = await _run_to_gate(approval_server.url, "Approved from the browser")
    wait = WebDriverWait(browser, 20)
    browser.get(f"{approval_server.url}/newsroom/ui")
    token_box = wait.until(EC.presence_of_element_located((By.ID, "token")))  # no token: the login form
    assert tid[-8:] not in browser.page_source
    token_box.send_keys(WEB_TOKEN)
    browser.find_element(By.ID, "login").click()
    wait.until(EC.presence_of_element_located((By.ID, "runs")))
    browser.find_element(By.LINK_TEXT, tid[-8:]).click()

    wait.until(EC.presence_of_element_located((By.ID, "approve")))
    assert browser.find_element(By.ID, "status").text == "awaiting_approval"
    assert "Grouped-query attention shares key/value heads" in browser.find_element(By.ID, "draft").text
    scores = browser.find_element(By.ID, "scores").text
    assert "technical_accuracy 4" in scores and "calibration 4" in scores
    assert browser.find_element(By.ID, "cost").text.startswith("$")
    assert browser.find_element(By.ID, "estimate").text.startswith("Estimated before the run: estimate $")
    assert "awaiting_approval" in browser.find_element(By.ID, "events").text
    browser.save_screenshot(str(session_dir / "web-approval-before.png"))

    browser.find_element(By.ID, "approve").click()
    flash = wait.until(EC.presence_of_element_located((By.ID, "flash")))
    assert flash.text.startswith("Approved")
    deadline = time.monotonic() + 90  # the publish runs in the background; a loaded machine takes a while
    while browser.find_element(By.ID, "status").text != "published" and time.monotonic() < deadline:
        time.sleep(0.3)
        browser.refresh()
    assert browser.find_element(By.ID, "status").text == "published"
    publication = browser.find_element(By.ID, "publication").text
    assert "static_site" in publication
    assert not browser.find_elements(By.ID, "approve")  # nothing left to decide
    browser.save_screenshot(str(session_dir / "web-approval-after.png"))
    decisions = [e for e in await posts.list_events(db, tid) if e["kind"] == "human_decision"]
    assert [d["actor"] for d in decisions] == ["web (web)"]
    assert len(await posts.publications_for(db, tid)) == 1


async def test_edit_the_draft_in_the_textarea_in_chromium(browser, approval_server, approval_script, db):
    """The edit form as a browser submits it: the textarea holds the draft as Markdown; the reviewer
    changes it and saves; the page then shows the human's version waiting, with its citation check."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    tid = await _run_to_gate(approval_server.url, "Edited in the browser")
    wait = WebDriverWait(browser, 20)
    browser.get(f"{approval_server.url}/newsroom/ui/runs/{tid}")
    if browser.find_elements(By.ID, "token"):  # not logged in yet (this test run alone)
        browser.find_element(By.ID, "token").send_keys(WEB_TOKEN)
        browser.find_element(By.ID, "login").click()
        wait.until(EC.presence_of_element_located((By.ID, "runs")))
        browser.get(f"{approval_server.url}/newsroom/ui/runs/{tid}")
    area = wait.until(EC.presence_of_element_located((By.ID, "edit-draft")))
    assert area.get_attribute("value").startswith("# GQA and the KV cache\n\n")
    area.send_keys("\n\nA line typed in the browser.")
    browser.find_element(By.ID, "edit").click()
    flash = wait.until(EC.presence_of_element_located((By.ID, "flash")))
    assert flash.text.startswith("Your edit is the new version")
    # The run resumes in the background: "Draft v2" is on the page as soon as the edit is in the
    # state, its citation check only once the run is back at the gate with it ("... waits for
    # approval"). Wait for that (a loaded machine takes a while), not for the first sight of v2.
    deadline = time.monotonic() + 90
    while "Draft v2 waits for approval" not in browser.page_source and time.monotonic() < deadline:
        time.sleep(0.3)
        browser.refresh()
    assert "Draft v2 waits for approval" in browser.page_source, browser.find_element(By.ID, "events").text
    assert "A line typed in the browser." in browser.find_element(By.ID, "draft").text
    assert "edited by web (web)" in browser.page_source and browser.find_elements(By.ID, "citation-support")
    edits = [e for e in await posts.list_events(db, tid) if e["kind"] == "draft_edited"]
    assert [(e["actor"], e["detail"]["lines_added"]) for e in edits] == [("web (web)", 2)]


async def test_the_run_page_shows_the_citation_check(approval_server, approval_script, site, db):  # noqa: F811
    """A real post to the gate on the server: the page it names is fetched and cited as [1]; the
    draft's numbers pass the rules, the claim call finds one claim the source does not support;
    with no revision cycle allowed the draft is escalated, and its page shows the support rate,
    every checked claim with the judge's quote, the unsupported one with why, the failed fetch and
    the cited page's link. Text from the draft and from the judge is escaped, never markup."""
    import json
    import re

    from tests.engine_fixtures import JUDGE, OUTLINE, PASSING, WRITER

    url, _ = site
    draft = ("# GQA at the gate\n\nLlama 3.1 8B has 32 query heads and 8 KV heads [1]. "
             "Four query heads share each KV head, so the cache is four times smaller [1]. "
             "Grouped-query attention was invented to <b>speed up</b> training [1].")
    quotes = {"32 query heads": "Llama 3.1 8B has 32 query heads and 8 KV heads",
              "Four query heads": "four query heads share each KV head and the KV cache is four times smaller",
              "invented": "Grouped-query attention lets several query <heads> share one key/value head."}

    def writer(req):
        return OUTLINE if req.wants_json else draft

    def judge(req):
        if "claims" not in json.dumps(req.schema or {}):
            return PASSING
        claims = re.findall(r"^(\d+)\. (.+) \(cites", req.prompt, re.MULTILINE)
        out = []
        for n, text in claims:
            key = next(k for k in quotes if k in text)
            out.append({"id": int(n), "verdict": "unsupported" if key == "invented" else "supported",
                        "quote": quotes[key]})
        return {"claims": out}

    approval_script.on_chat(writer, model=WRITER)
    approval_script.on_chat(judge, model=JUDGE)
    client = service_client(approval_server.url)
    tid = (await client.threads.create(metadata={"source": "web-test"}))["thread_id"]
    await client.runs.wait(tid, "newsroom", input={"topic": "GQA at the gate", "requester": "web-test", "source": "api",
                                                   "sources": [f"{url}/article", f"{url}/missing"]},
                           config={"configurable": {"max_revisions": 0}})
    state = await client.threads.get_state(tid)
    assert state["next"] == ["human_approval"], state["values"].get("error")
    # the claim call was made once, for the three cited claims; the rubric judge never saw the draft
    claim_calls = [r for r in approval_script.requests_for(JUDGE) if "claims" in json.dumps(r.schema or {})]
    assert len(claim_calls) == 1 and len(approval_script.requests_for(JUDGE)) == 1

    async with httpx.AsyncClient(timeout=30) as http:
        page = await http.get(f"{approval_server.url}/newsroom/ui/runs/{tid}",
                              headers={"Authorization": f"Bearer {WEB_TOKEN}"})
    assert page.status_code == 200
    text = page.text
    assert "Escalated: the citation check still finds 1 unsupported claim(s)" in text
    support = text.split("id=citation-support>")[1].split("</p>")[0]
    assert "support rate <b>67%</b>" in support and "(2/3 cited claims supported)" in support
    assert "<b>unsupported claims</b>" in support and f"checked by rules+support+{JUDGE}" in support
    table = text.split("<table id=claims>")[1].split("</table>")[0]
    rows = re.findall(r"<tr class=(\w+)><td>\w+</td><td>(.*?)</td><td>(.*?)</td><td><small>(.*?)</small></td></tr>",
                      table, re.DOTALL)
    assert [r[0] for r in rows] == ["supported", "supported", "unsupported"]
    assert rows[0][1].startswith("Llama 3.1 8B has 32 query heads and 8 KV heads [1]")
    assert rows[0][3] == quotes["32 query heads"] and rows[0][2] == ""
    # the unsupported claim: the sentence and the judge's quote escaped, the reason shown
    assert "&lt;b&gt;speed up&lt;/b&gt;" in rows[2][1] and "<b>speed up</b>" not in text
    assert rows[2][2] == "the cited source does not support it"
    assert "&lt;heads&gt;" in rows[2][3]
    assert f"Not fetched: {url}/missing: HTTP 404" in text
    assert f"<a href='{url}/article' rel=nofollow>" in text and "GQA in numbers" in text
    # the same figures reached the gate's payload and the events
    assert state["values"]["citation_checks"][-1]["support_rate"] == round(2 / 3, 4)
    checks = [e for e in await posts.list_events(db, tid) if e["kind"] == "citation_check"]
    assert [e["detail"]["supported"] for e in checks] == [2]
