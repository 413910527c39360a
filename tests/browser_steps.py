"""What the browser tests do on the page, shared by tests/test_ui_browser.py (the UI's behaviour, edge cases
included) and tests/test_ui_tutorial.py (the web-UI tutorial, step by step): a free port, the page's
menus, fields, uploads and status, and screenshots (always to tests/artifacts/, to docs/ when asked for
with PLMFORGE_SCREENSHOTS=docs)."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docs_mode() -> bool:
    """PLMFORGE_SCREENSHOTS=docs: the screenshots (and numbers) the docs show are written into docs/."""
    return os.environ.get("PLMFORGE_SCREENSHOTS") == "docs"


def screenshot(page, artifact: Path, docs: Path | None = None, region: tuple[str, str] | None = None) -> None:
    """The whole page to `artifact`; in docs mode also to `docs`, cut to the part of the page from element
    region[0] to element region[1] when given."""
    artifact.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifact), full_page=True)
    if docs is None or not docs_mode():
        return
    docs.parent.mkdir(parents=True, exist_ok=True)
    clip = None
    if region:
        page.evaluate("window.scrollTo(0, 0)")
        top, bottom = (page.locator(sel).bounding_box() for sel in region)
        clip = {"x": 0, "y": top["y"] - 10, "width": page.viewport_size["width"],
                "height": bottom["y"] + bottom["height"] - top["y"] + 20}
    page.screenshot(path=str(docs), full_page=True, clip=clip)


def pick(page, elem_id: str, option: str, name: str | None = None) -> None:
    box = page.locator(f"#{elem_id}").get_by_role("combobox", name=name)
    box.click()
    page.get_by_role("option", name=option, exact=True).click()


def set_text(page, key: str, value: str) -> None:
    """A generated form field by its config key, e.g. training.epochs (HTML id f_training_epochs)."""
    field = page.locator(f"#f_{key.replace('.', '_')}").locator("input, textarea").first
    field.fill(value)
    field.press("Tab")


def value_of(page, key: str) -> str:
    return page.locator(f"#f_{key.replace('.', '_')}").locator("input, textarea").first.input_value()


def status_text(page) -> str:
    return page.locator("#status").inner_text()


def wait_status(page, words: tuple[str, ...], timeout: float = 300.0, seen: list | None = None) -> str:
    end = time.time() + timeout
    while time.time() < end:
        text = status_text(page)
        if seen is not None:
            seen.append(text)
        if any(f"Status: {w}" in text for w in words):
            return text
        time.sleep(0.2)
    console = page.locator("#console textarea").first
    log = console.input_value() if console.count() else ""
    raise AssertionError(f"status never became {words}: {status_text(page)}\noptions: "
                         f"{page.locator('#options_msg').inner_text()}\nconsole:\n{log}")


def upload(page, paths: list[Path]) -> None:
    page.get_by_role("radio", name="upload").check()
    clear = page.locator("#upload").get_by_role("button", name="Clear")
    if clear.count():
        clear.click()
    page.locator("#upload input[type=file]").set_input_files([str(p) for p in paths])
    for p in paths:
        page.locator("#upload").get_by_role("row", name=re.compile(re.escape(p.name))).wait_for()
