"""The browser demo for real: `python demo.py` started as a server on a free local
port, driven through gradio's client API and through the page in headless Chromium,
with the Pixel-Face sample views (../shared/assets). The Chromium test needs Debian's
`chromium` and `chromium-driver` (README, "Tests") and skips without them."""
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import trimesh
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "..", "shared", "assets", "pixel_face_samples")
VIEWS = [os.path.join(SAMPLES, f"{k}", f"0033107{k}.png") for k in range(3)]
FAST = [
    "fit.steps_pose=10",
    "fit.steps_shape=20",
    "fit.steps_appearance=5",
    "fit.render_size=64",
    "fit.texture_size=128",
]
STARTUP_S = 240  # importing torch, mediapipe and gradio on a busy 2-core machine
RESULT_S = 300

pytestmark = pytest.mark.skipif(
    not all(os.path.isfile(p) for p in VIEWS), reason="../shared/assets/pixel_face_samples is absent"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """URL of a `python demo.py` server (stopped after the module's tests)."""
    port = free_port()
    out = tmp_path_factory.mktemp("demo")
    log = open(out / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "demo.py", "--out", str(out / "runs"), f"demo.port={port}", *FAST],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"demo.py exited with {process.returncode}: {(out / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"demo.py did not answer within {STARTUP_S} s")
                time.sleep(1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def check_glb(data: bytes) -> trimesh.Trimesh:
    """A binary glTF holding a textured face mesh."""
    assert data[:4] == b"glTF"
    mesh = trimesh.load(io.BytesIO(data), file_type="glb", force="mesh", process=False)
    assert len(mesh.faces) > 1000 and mesh.visual.uv is not None
    texture = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"))
    assert texture.std() > 10  # baked from the photos, not a flat colour
    return mesh


def test_client_api_returns_the_mesh(server, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(server, verbose=False, download_files=str(tmp_path))
    glb, sheet, table, summary, files = client.predict(
        [handle_file(p) for p in VIEWS], None, api_name="/reconstruct"
    )
    with open(glb, "rb") as f:
        check_glb(f.read())
    assert Image.open(sheet).size[0] > 3 * 224
    rows = table["data"]
    assert [r[0] for r in rows[:3]] == ["0-00331070", "1-00331071", "2-00331072"] and rows[3][0] == "all views"
    assert all(0 < r[1] < 10 for r in rows)  # px at 224: a fit, not a failure
    assert "3 view(s)" in summary
    names = sorted(os.path.basename(f) for f in files)
    assert names == sorted(["mesh.glb", "textured_obj.zip", "mesh.obj", "coeffs.npz", "coeffs.json", "sheet.png"])

    # A photo without a face: one clear message naming it.
    blank = tmp_path / "wall.png"
    Image.new("RGB", (224, 224), (128, 128, 128)).save(blank)
    with pytest.raises(AppError, match="wall.png: no face found"):
        client.predict([handle_file(str(blank))], None, api_name="/reconstruct")


def test_client_api_takes_a_head_turn_video(server, tmp_path):
    from gradio_client import Client, handle_file

    from lib.video import write_video
    from test_video import head_turn_frames

    path = tmp_path / "turn.mp4"
    write_video(str(path), head_turn_frames(), fps=10)
    client = Client(server, verbose=False, download_files=str(tmp_path))
    glb, _, table, summary, files = client.predict(None, handle_file(str(path)), api_name="/reconstruct")
    with open(glb, "rb") as f:
        check_glb(f.read())
    assert "3 view(s)" in summary and len(table["data"]) == 4
    record = next(f for f in files if f.endswith("video_frames.json"))
    with open(record) as f:
        assert [c["target_yaw_deg"] for c in json.load(f)["chosen"]] == [-35.0, 0.0, 35.0]


CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.skipif(not (CHROMIUM and DRIVER),
                    reason="Chromium absent: apt-get install chromium chromium-driver (README, Tests)")
def test_page_in_headless_chromium_shows_the_mesh(server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = CHROMIUM
    # Software WebGL (SwiftShader): the viewer draws with no GPU and no display.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1300",
                "--enable-unsafe-swiftshader", "--use-angle=swiftshader"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        driver.get(server)
        wait = WebDriverWait(driver, 60)
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#photos input[type=file]")))
        upload.send_keys("\n".join(os.path.abspath(p) for p in VIEWS))
        # Listed with their sizes once uploaded (the page shows stem and extension apart).
        wait.until(lambda d: all(os.path.basename(p)[:-4] in d.find_element(By.ID, "photos").text for p in VIEWS)
                   and d.find_element(By.ID, "photos").text.count("KB") == len(VIEWS))
        driver.find_element(By.ID, "run").click()

        link = WebDriverWait(driver, RESULT_S).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "#viewer a[data-testid=model3d-download-link]"))
        )
        href = link.get_attribute("href")
        assert href.endswith("mesh.glb")
        with urllib.request.urlopen(href, timeout=30) as response:
            check_glb(response.read())
        canvas = WebDriverWait(driver, 60).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "#viewer canvas[data-engine]"))
        )
        assert canvas.get_attribute("data-engine").startswith("Babylon.js")

        # The viewer drew it: the canvas centre holds a face's colours, not the empty
        # background (polled: loading and the first frames take a moment).
        def drawn(_):
            pixels = np.asarray(Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("RGB")).astype(float)
            h, w = pixels.shape[:2]
            centre = pixels[h // 4: 3 * h // 4, w // 3: 2 * w // 3]
            return centre.std() > 15 and (np.abs(centre - pixels[2, 2]).sum(-1) > 60).mean() > 0.3

        WebDriverWait(driver, 60).until(drawn)
        assert "landmark median" in driver.find_element(By.ID, "summary").text
        driver.save_screenshot(str(tmp_path / "demo.png"))
        if os.environ.get("DEMO_SCREENSHOT"):
            shutil.copy(tmp_path / "demo.png", os.environ["DEMO_SCREENSHOT"])
    finally:
        driver.quit()


def test_uploads_become_one_subject_or_one_clear_error(tmp_path):
    """The checks made before any work, in-process (no server); a file that is not an
    image is refused later by the photo reader, as in test_sample.py."""
    from demo import DemoPipeline
    from lib.config import load_config
    from lib.errors import UserError

    pipeline = DemoPipeline(load_config(None), str(tmp_path / "runs"))
    folder = str(tmp_path / "request")
    subject = pipeline.subject_from_uploads(VIEWS[:2], None, folder)
    assert [os.path.basename(v) for v in subject.views] == ["0-00331070.png", "1-00331071.png"]
    assert all(open(a, "rb").read() == open(b, "rb").read() for a, b in zip(subject.views, VIEWS))
    for photos, video, message in (
        (None, None, "drop 1 to 3 photos"),
        (VIEWS + VIEWS[:1], None, "4 photos"),
        (VIEWS[:1], str(tmp_path / "turn.mp4"), "not both"),
    ):
        with pytest.raises(UserError, match=message):
            pipeline.subject_from_uploads(photos, video, folder)
