"""A first-time user's first run in the web UI, measured in a real browser (Debian's Chromium driven by
Playwright): open the page, keep what it offers (the bundled AMP example, AntiBERTy, freeze, its default
epochs), press Start, wait for the finished run's test metrics on the page. Counts the clicks and the
seconds from opening the page, and records what the page then shows. A fresh embedding store is used, so
the time includes embedding every sequence once (later runs on the same data read them from the store).

    python benchmarks/ui_first_run.py [--epochs N]   (needs `bash scripts/system.sh` for chromium)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import environment, write_section  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_run(epochs: int | None) -> dict:
    from playwright.sync_api import expect, sync_playwright

    from plmforge.ui.app import launch, shutdown

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("needs Debian's chromium: bash scripts/system.sh")
    root = Path(tempfile.mkdtemp())
    os.environ["PLMFORGE_CACHE_DIR"] = str(root / "store")  # nothing embedded yet, as on a new machine
    port = _free_port()
    demo = launch(port=port, runs_dir=root / "runs", work_dir=root / "work", block=False)
    clicks = 0
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            t0 = time.time()
            page.goto(f"http://127.0.0.1:{port}/")
            expect(page.locator("#columns_md")).to_contain_text("aa_seq")  # the example's columns, read
            if epochs is not None:  # typing a number is not a click
                field = page.locator("#f_training_epochs input").first
                field.fill(str(epochs))
                field.press("Tab")
            page.get_by_role("button", name="Start", exact=True).click()
            clicks += 1
            started = time.time()
            seen_embedding = False
            while True:
                text = page.locator("#status").inner_text()
                seen_embedding |= "Embedding:" in text
                if "Status: finished" in text or "Status: failed" in text:
                    break
                time.sleep(0.5)
            finished = time.time()
            expect(page.locator("#verdict")).to_contain_text("held-out test proteins")
            verdict = page.locator("#verdict").inner_text()
            status = text
            browser.close()
    finally:
        shutdown(demo)
        demo.close()
    run = next((root / "runs").iterdir())
    blob = json.loads((run / "test_metrics.json").read_text())
    return {"clicks": clicks, "open_to_finished_seconds": round(finished - t0, 1),
            "start_to_finished_seconds": round(finished - started, 1), "embedding_phase_shown": seen_embedding,
            "finished": "Status: finished" in status, "test_samples": blob.get("n_samples"),
            "test_metrics": {k: round(v, 4) for k, v in blob["metrics"].items() if isinstance(v, float)},
            "verdict": verdict, "epochs": epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="type this many epochs first (default: keep "
                        "the page's default)")
    args = parser.parse_args()
    row = first_run(args.epochs)
    print(json.dumps(row, indent=2))
    body = [f"Measured on {environment()}.", "",
            "Open `plmforge ui`, keep what the page offers (bundled AMP example, AntiBERTy, freeze"
            + (f", epochs typed: {args.epochs}" if args.epochs else ", default epochs") + "), press Start; a "
            "fresh embedding store, so every sequence is embedded once. `python benchmarks/ui_first_run.py`.", "",
            "| clicks | open -> finished (s) | Start -> finished (s) | embedding progress shown | test proteins "
            "| test accuracy | test mcc |", "|---|---|---|---|---|---|---|",
            f"| {row['clicks']} | {row['open_to_finished_seconds']} | {row['start_to_finished_seconds']} | "
            f"{'yes' if row['embedding_phase_shown'] else 'no'} | {row['test_samples']} | "
            f"{row['test_metrics'].get('accuracy')} | {row['test_metrics'].get('mcc')} |", "",
            f"The page's verdict: {row['verdict']}"]
    write_section("Web UI: a first run on the bundled example", body, "ui_first_run", [row])


if __name__ == "__main__":
    main()
