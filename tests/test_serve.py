"""memobert-serve: the HTTP layer (in-process, a stand-in predictor), then the real server with the tiny bundle,
driven through its page in a headless Chromium (slow)."""

import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid

import pytest

from memobert_plugin.inference import serve


class _Recorder:
    """Stands in for PredictionService: answers one record and remembers what it was asked."""

    def __init__(self):
        self.predictor = type("P", (), {"class_names": ["anger", "happy"]})()
        self.calls = []

    def predict(self, media, transcript="", plot=False, name=""):
        with open(media, "rb") as handle:
            data = handle.read()
        cues = open(transcript, "rb").read() if transcript else b""
        self.calls.append((os.path.basename(media), data, cues, plot, name))
        return {"classes": self.predictor.class_names, "records": [], "warnings": []}


@pytest.fixture
def local_server():
    service = _Recorder()
    server = serve.ThreadingHTTPServer(("127.0.0.1", 0), serve.make_handler(service, max_upload=1000))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield service, server.server_address[1]
    server.shutdown()
    server.server_close()


def _multipart(fields) -> tuple:
    boundary = uuid.uuid4().hex
    body = b""
    for name, filename, data in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return f"multipart/form-data; boundary={boundary}", body + f"--{boundary}--\r\n".encode()


def _post(port, body: bytes, content_type: str, length=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", "/predict")
    conn.putheader("Content-Type", content_type)
    conn.putheader("Content-Length", str(len(body) if length is None else length))
    conn.endheaders()
    if length is None:
        conn.send(body)
    response = conn.getresponse()
    answer = response.status, json.loads(response.read())
    conn.close()
    return answer


def test_uploads_reach_the_service_and_bad_requests_get_a_message(local_server):
    service, port = local_server
    content_type, body = _multipart([("media", "../../my talk.wav", b"RIFF\x00audio"), ("transcript", "t.srt", b"1\n"),
                                     ("plot", "", b"1")])
    assert _post(port, body, content_type) == (200, {"classes": ["anger", "happy"], "records": [], "warnings": []})
    assert service.calls == [("media-my_talk.wav", b"RIFF\x00audio", b"1\n", True, "my talk.wav")]
    # over the limit: refused from the header, before the body is read
    status, answer = _post(port, b"", content_type, length=5000)
    assert status == 413 and "this server takes at most 0 MB (memobert-serve --max-upload-mb)" in answer["error"]
    assert _post(port, b"x=1", "application/x-www-form-urlencoded")[1]["error"].startswith(
        "POST /predict takes multipart/form-data")
    assert _post(port, *reversed(_multipart([("transcript", "t.srt", b"1\n")])))[1] == {
        "error": "no media uploaded: choose an audio or video file"}
    assert _post(port, b'{"transcript": "t.srt"}', "application/json")[1]["error"].startswith(
        'a JSON request is {"path"')
    assert len(service.calls) == 1


def test_server_options_are_checked_before_the_model_loads(capsys):
    with pytest.raises(SystemExit) as stop:
        serve.main(["--model", "m.bundle", "--max-upload-mb", "0"])
    assert stop.value.code == 2 and "--max-upload-mb must be > 0" in capsys.readouterr().err


# --- the real server and a real browser (slow) ------------------------------------------------------------------

from prepare_material import pocketsphinx, tiny_fer, tiny_wav2vec2  # noqa: E402,F401
from test_predict_media import media, trained  # noqa: E402,F401  the tiny bundle trained on real media


@pytest.fixture(scope="module")
def clip(tmp_path_factory, pocketsphinx):  # noqa: F811
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    from recording_material import long_recording

    return long_recording(str(tmp_path_factory.mktemp("clip")), pocketsphinx, pieces=4)


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "memobert_plugin.inference.serve", "--model", trained["bundle"],
                                 "--port", "0", "--max-upload-mb", "3"], stdout=out, stderr=subprocess.STDOUT,
                                text=True)
    deadline = time.monotonic() + 300
    address = None
    while address is None:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        found = [line for line in log.read_text().splitlines() if "listening on" in line]
        address = found[0].split("listening on ")[1] if found else None
        time.sleep(0.2)
    yield address
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="the page test drives Chromium with selenium")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,1400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def _upload(browser, address, media, transcript=None, timeout=300):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(address)
    browser.find_element(By.ID, "media").send_keys(str(media))
    if transcript:
        browser.find_element(By.ID, "transcript").send_keys(str(transcript))
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, timeout).until(
        lambda b: b.find_element(By.ID, "error").text or not b.find_element(By.ID, "timeline").get_attribute("hidden"))


@pytest.mark.slow
def test_the_page_shows_the_timeline_of_an_uploaded_clip(server, browser, clip, tmp_path):
    from selenium.webdriver.common.by import By

    assert server.startswith("http://127.0.0.1:")  # this machine only, unless --host says otherwise
    _upload(browser, server, clip["video"], clip["srt"])
    assert browser.find_element(By.ID, "error").text == ""
    rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")]
    plot = browser.find_element(By.ID, "plot")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", plot) > 300
    browser.save_screenshot(str(tmp_path / "page.png"))
    # the page shows what the JSON API answers for the same files named by path
    conn = http.client.HTTPConnection(server.split("//")[1].rstrip("/"), timeout=300)
    conn.request("POST", "/predict", json.dumps({"path": clip["video"], "transcript": clip["srt"]}),
                 {"Content-Type": "application/json"})
    answer = json.loads(conn.getresponse().read())
    assert len(rows) == len(answer["records"]) >= len(clip["pieces"])
    for row, record in zip(rows, answer["records"]):
        assert row[:4] == [f"{record['start']:.2f}", f"{record['end']:.2f}", record["text"], record["label"]]
        assert row[4:-1] == [f"{record['probabilities'][c]:.3f}" for c in answer["classes"]]
    assert " ".join(r[2] for r in rows) == " ".join(p["text"] for p in clip["pieces"])


@pytest.mark.slow
def test_the_page_names_a_bad_or_too_large_file(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video")
    _upload(browser, server, broken)
    assert browser.find_element(By.ID, "error").text.startswith("unreadable audio in broken.mp4")
    assert browser.find_element(By.ID, "timeline").get_attribute("hidden")
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * (4 * 2 ** 20))
    _upload(browser, server, big)
    assert browser.find_element(By.ID, "error").text == "big.wav is 4.0 MB; this server takes at most 3 MB."
