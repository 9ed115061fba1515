"""``memobert-serve``: the model and its extractors loaded once, emotion timelines answered over local HTTP.

* ``GET /``: a page where a clip (and optionally its transcript) is uploaded and its timeline shown
  as a table and a plot.
* ``POST /predict``: a ``multipart/form-data`` upload (field ``media``, optional ``transcript``), or JSON
  ``{"path": "/local/recording.mp4", "transcript": "/local/recording.srt"}`` naming files on this machine.
  Answers JSON ``{"classes", "records", "warnings", "plot"}``: the records of
  :func:`memobert_plugin.inference.timeline.predict_recording` (one per speech segment), the messages about missing
  input, and the plot as a ``data:image/png;base64`` URL when asked for (``"plot": true`` / field
  ``plot=1``). A bad request answers ``{"error": message}`` with status 400 (413 for an upload over
  ``--max-upload-mb``).
* ``GET /health``: the model and its classes.

It listens on 127.0.0.1 unless ``--host`` says otherwise: anyone who can reach it can make it read any file
this user can read (the ``path`` form). Requests are answered one prediction at a time.
"""

import argparse
import base64
import json
import os
import re
import sys
import tempfile
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List, Tuple

__all__ = ["PredictionService", "build_parser", "main"]

_PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serve_page.html")


class RequestError(ValueError):
    """A request the service cannot answer; the message says why (shown on the page)."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


class PredictionService:
    """An :class:`~memobert_plugin.inference.predictor.EmotionPredictor` with its extractors and voice-activity detector
    loaded, answering one recording at a time."""

    def __init__(self, predictor, vad=None):
        from memobert_plugin.prepare.media.voice_activity import load_voice_activity

        self.predictor = predictor
        predictor.extract([])  # loads the extractor stages now, not on the first request
        self.vad = vad or load_voice_activity("auto")
        self._lock = threading.Lock()  # the model and extractors serve one prediction at a time

    def predict(self, media: str, transcript: str = "", plot: bool = False, name: str = "") -> dict:
        """The answer for one recording on this machine; ``name`` replaces its path in the records."""
        from memobert_plugin.inference.timeline import (
            AUDIO_EXTENSIONS,
            VIDEO_EXTENSIONS,
            plot_timeline,
            predict_recording,
        )

        ext = os.path.splitext(media)[1].lower()
        if ext not in AUDIO_EXTENSIONS + VIDEO_EXTENSIONS:
            raise RequestError(f"{name or media}: not an audio ({', '.join(AUDIO_EXTENSIONS)}) or video "
                               f"({', '.join(VIDEO_EXTENSIONS)}) file")
        video = media if ext in VIDEO_EXTENSIONS else ""
        warnings: List[str] = []
        with self._lock:
            try:
                records = predict_recording(self.predictor, "" if video else media, video, transcript,
                                            warn=warnings.append, vad=self.vad)
            except (OSError, ValueError) as err:
                raise RequestError(str(err).replace(media, name or media)) from None
        for record in records:
            record["file"] = name or record["file"]
        answer = {"classes": self.predictor.class_names, "records": records,
                  "warnings": [w.replace(media, name or media) for w in warnings]}
        if plot:
            with tempfile.TemporaryDirectory(prefix="memobert-serve-") as scratch:
                png = os.path.join(scratch, "timeline.png")
                plot_timeline(records, self.predictor.class_names, png)
                with open(png, "rb") as handle:
                    answer["plot"] = "data:image/png;base64," + base64.b64encode(handle.read()).decode()
        return answer


def _safe_name(filename: str) -> str:
    """An uploaded file's name without folders or odd characters (it only keeps the extension meaningful)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(filename.replace("\\", "/")))
    return name.lstrip(".") or "upload"


def _form_parts(content_type: str, body: bytes) -> dict:
    """``field name -> (filename, bytes)`` of a multipart/form-data body."""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise RequestError("the upload is not multipart/form-data")
    parts = {}
    for part in message.iter_parts():
        field = part.get_param("name", header="content-disposition")
        if field:
            parts[field] = (part.get_filename() or "", part.get_payload(decode=True) or b"")
    return parts


def make_handler(service: PredictionService, max_upload: int):
    """The request handler class for ``service``, refusing bodies over ``max_upload`` bytes."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "memobert-serve"

        def log_message(self, format, *args):  # noqa: A002  (the base class's name) one line per request
            sys.stderr.write(f"memobert-serve: {self.address_string()} {format % args}\n")

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: HTTPStatus, data: dict) -> None:
            self._send(status, json.dumps(data).encode(), "application/json")

        def do_GET(self):  # noqa: N802  (http.server's name)
            if self.path in ("/", "/index.html"):
                with open(_PAGE, "rb") as handle:
                    page = handle.read().replace(b"{max_upload_mb}", f"{max_upload / 2 ** 20:g}".encode())
                page = page.replace(b"{max_upload_bytes}", str(max_upload).encode())
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            elif self.path == "/health":
                self._json(HTTPStatus.OK, {"classes": service.predictor.class_names})
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}: GET / or /health, POST /predict"})

        def do_POST(self):  # noqa: N802
            try:
                if self.path != "/predict":
                    raise RequestError(f"no endpoint {self.path}: POST /predict", HTTPStatus.NOT_FOUND)
                self._json(HTTPStatus.OK, self._predict())
            except RequestError as err:
                self.close_connection = True  # an unread body must not be taken for the next request
                self._json(err.status, {"error": str(err)})

        def _body(self) -> bytes:
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                raise RequestError("the request needs a Content-Length", HTTPStatus.LENGTH_REQUIRED) from None
            if length > max_upload:
                raise RequestError(f"the upload is {length / 2 ** 20:.1f} MB; this server takes at most "
                                   f"{max_upload / 2 ** 20:.0f} MB (memobert-serve --max-upload-mb)",
                                   HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return self.rfile.read(length)

        def _predict(self) -> dict:
            content_type = self.headers.get("Content-Type", "")
            body = self._body()
            if content_type.startswith("application/json"):
                try:
                    request = json.loads(body)
                    path, transcript = request["path"], request.get("transcript") or ""
                except (ValueError, KeyError, TypeError):
                    raise RequestError('a JSON request is {"path": "/a/recording.mp4", "transcript": '
                                       '"/a/recording.srt" (optional), "plot": false}') from None
                return service.predict(path, transcript, bool(request.get("plot")))
            if not content_type.startswith("multipart/form-data"):
                raise RequestError("POST /predict takes multipart/form-data (field 'media') or application/json")
            parts = _form_parts(content_type, body)
            filename, data = parts.get("media", ("", b""))
            if not data:
                raise RequestError("no media uploaded: choose an audio or video file")
            with tempfile.TemporaryDirectory(prefix="memobert-serve-") as scratch:
                media = os.path.join(scratch, "media-" + _safe_name(filename))
                with open(media, "wb") as handle:
                    handle.write(data)
                transcript = ""
                cue_name, cues = parts.get("transcript", ("", b""))
                if cues:
                    transcript = os.path.join(scratch, "transcript-" + _safe_name(cue_name))
                    with open(transcript, "wb") as handle:
                        handle.write(cues)
                answer = service.predict(media, transcript, parts.get("plot", ("", b""))[1] == b"1",
                                         name=os.path.basename(filename))
                answer["warnings"] = [w.replace(transcript, cue_name) if transcript else w for w in answer["warnings"]]
                return answer

    return Handler


def build_parser() -> argparse.ArgumentParser:
    """``memobert-serve``: load a model bundle and its extractors once, answer emotion timelines over local HTTP."""
    parser = argparse.ArgumentParser(prog="memobert-serve", description=build_parser.__doc__)
    parser.add_argument("--model", required=True, help="a bundle folder written by memobert-bundle (or a checkpoint)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8765, help="port (0: any free one; the address is printed)")
    parser.add_argument("--max-upload-mb", type=float, default=200.0, help="largest request body accepted")
    parser.add_argument("--device", default="cpu", help="torch device for the model and extractors")
    parser.add_argument("--wav2vec2", help="the wav2vec 2.0 checkpoint (as memobert-predict)")
    parser.add_argument("--fer-model", help="the FER checkpoint (as memobert-predict)")
    return parser


def serve(service: PredictionService, host: str, port: int, max_upload: int) -> None:
    server = ThreadingHTTPServer((host, port), make_handler(service, max_upload))
    address: Tuple[str, int] = server.server_address[:2]
    print(f"memobert-serve: listening on http://{address[0]}:{address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_upload_mb <= 0 or not 0 <= args.port < 65536:
        parser.error(f"--max-upload-mb must be > 0 and --port in 0-65535, got {args.max_upload_mb} and {args.port}")
    from memobert_plugin.inference.predictor import EmotionPredictor  # torch, fairseq and the model: only once there is work
    from memobert_plugin.inference.timeline import quiet_library_logs

    try:
        checkpoints = {k: v for k, v in (("acoustic", args.wav2vec2), ("visual", args.fer_model)) if v}
        service = PredictionService(EmotionPredictor(args.model, device=args.device, checkpoints=checkpoints))
        quiet_library_logs()
    except (OSError, ValueError) as err:
        parser.exit(1, f"memobert-serve: error: {err}\n")
    serve(service, args.host, args.port, int(args.max_upload_mb * 2 ** 20))


if __name__ == "__main__":
    main()
