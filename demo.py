"""Browser demo: 1 to 3 photos of one face (or a short head-turn video) in, the
textured 3D face out, in an interactive viewer, with the overlay sheet, the per-view
landmark error and every file test_sample.py writes to download (doc/demo.md).

Same pipeline, config and options as test_sample.py: fitting by default,
--checkpoint FILE to start from a network (with --fit to refine its prediction).
Runs on the CPU and offline, and serves 127.0.0.1 only unless demo.host says
otherwise. Each request's files stay under --out DIR/<request>/.
"""
from __future__ import annotations

import os

# Before gradio is imported: no usage statistics sent anywhere (the demo is offline).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import itertools  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402

import torch  # noqa: E402

from lib.cli import make_parser, parse_config, run  # noqa: E402
from lib.config.schema import Config  # noqa: E402
from lib.errors import UserError  # noqa: E402
from lib.facemodel import photo_face_model  # noqa: E402
from lib.fitting.inputs import Subject  # noqa: E402
from lib.fitting.pipeline import prepare_subject, reconstruct, write_subject  # noqa: E402
from lib.fitting.request import photo_request, run_request  # noqa: E402
from lib.morphable import MorphableModel  # noqa: E402

MAX_PHOTOS = 3
DOWNLOADS = ("mesh.glb", "textured_obj.zip", "mesh.obj", "coeffs.npz", "coeffs.json", "sheet.png", "video_frames.json")
"""Files of a subject's folder offered for download, when present."""
TEXTURED_OBJ = ("textured.obj", "textured.mtl", "textured.png")
"""Zipped together: the OBJ names its MTL, which names its PNG, so they travel as one."""


class DemoPipeline:
    """The per-request work: a folder of uploads -> test_sample.py's files.

    cfg: the resolved Config; out: root folder of the requests; predictor and
    face_model: from a checkpoint (`models.predictor.load_predictor`, as in
    test_sample.py) or None and the face model for photos
    (`lib.facemodel.photo_face_model`, as test_sample.py --input); fit: run the
    fitting (always without a predictor).
    """

    def __init__(self, cfg: Config, out: str, predictor=None, face_model=None, fit: bool = True,
                 checkpoint: str = ""):
        from lib.preprocess.pipeline import Preprocessor

        self.cfg, self.out, self.predictor = cfg, out, predictor
        if face_model is None:
            face_model, notice = photo_face_model(cfg.face_model)
            if notice:
                print(f"note: {notice}", file=sys.stderr)
        self.face_model = face_model
        self.morphable = MorphableModel(self.face_model)
        self.fit = fit or predictor is None
        self.mode = "network+fit" if predictor and self.fit else "network" if predictor else "fit"
        self.preprocessor = Preprocessor(cfg.preprocess, cfg.loss.skin_weights, self.face_model,
                                         crop_size=cfg.fit.crop_size)
        self.request = run_request(cfg, self.mode, checkpoint, self.face_model)
        self._counter = itertools.count()

    def _request_folder(self) -> str:
        folder = os.path.join(self.out, f"{time.strftime('%Y%m%d-%H%M%S')}-{next(self._counter):03d}")
        os.makedirs(folder, exist_ok=True)
        return folder

    def subject_from_uploads(self, photos: list[str] | None, video: str | None, folder: str) -> Subject:
        """The uploads as one subject: photos copied under `folder/input/` with their
        own names, or the views chosen from the video (`lib.video`). Raises UserError
        for no upload, both kinds or too many photos."""
        photos = [p for p in photos or [] if p]
        if photos and video:
            raise UserError("give photos or a video, not both")
        if video:
            from lib.video import video_subject

            return video_subject(video, folder, self.morphable, self.cfg)
        if not photos:
            raise UserError(f"drop 1 to {MAX_PHOTOS} photos of one face, or a short head-turn video")
        if len(photos) > MAX_PHOTOS:
            raise UserError(f"{len(photos)} photos: give 1 to {MAX_PHOTOS} photos of one face (left, front, right)")
        inputs = os.path.join(folder, "input")
        os.makedirs(inputs, exist_ok=True)
        # Numbered: two uploads may share a name; a file that is not an image is
        # refused by the photo reader, naming it, like test_sample.py does.
        views = [shutil.copy(path, os.path.join(inputs, f"{k}-{os.path.basename(path)}")) for k, path in enumerate(photos)]
        return Subject(os.path.basename(folder), tuple(views))

    def __call__(self, photos: list[str] | None, video: str | None) -> tuple[str, dict]:
        """Reconstruct the uploads; returns (the subject's folder, its summary row)."""
        folder = self._request_folder()
        subject = self.subject_from_uploads(photos, video, folder)
        prepared = prepare_subject(subject, self.preprocessor)
        result = reconstruct(prepared, self.morphable, self.cfg, self.predictor, self.fit, progress=True)
        row = write_subject(folder, prepared, self.morphable, result, self.cfg, self.mode,
                            photo_request(self.request, subject.views))
        if all(os.path.isfile(os.path.join(folder, n)) for n in TEXTURED_OBJ):
            with zipfile.ZipFile(os.path.join(folder, "textured_obj.zip"), "w", zipfile.ZIP_DEFLATED) as archive:
                for name in TEXTURED_OBJ:
                    archive.write(os.path.join(folder, name), name)
        return folder, row


def view_table(row: dict, view_names: list[str]) -> list[list]:
    """Rows (view, landmark median px) for the result's table, plus 'all views'."""
    rows = [[name, round(err, 2)] for name, err in zip(view_names, row["landmark_median_px_per_view"])]
    return rows + [["all views", round(row["landmark_median_px"], 2)]]


def build_app(pipeline: DemoPipeline):
    """The gradio page: inputs (photos or a video), a Reconstruct button, and the
    results (3D viewer with the GLB, sheet, per-view error table, downloads). The
    button's API name is /reconstruct (gradio_client)."""
    import gradio as gr

    def on_reconstruct(photos, video, progress=gr.Progress(track_tqdm=True)):
        progress(0, desc="detecting the face")
        try:
            folder, row = pipeline(photos, video)
        except UserError as err:
            raise gr.Error(str(err), print_exception=False) from None
        with open(os.path.join(folder, "coeffs.json")) as f:
            view_names = json.load(f)["views"]
        files = [os.path.join(folder, n) for n in DOWNLOADS if os.path.isfile(os.path.join(folder, n))]
        summary = (f"**{row['mode']}**, {row['views']} view(s): landmark median **{row['landmark_median_px']:.2f} px** "
                   f"at {pipeline.cfg.fit.crop_size} px, fitted in {row['seconds_fit']:.1f} s")
        return (os.path.join(folder, "mesh.glb"), os.path.join(folder, "sheet.png"), view_table(row, view_names),
                summary, files)

    with gr.Blocks(title="DF-MVR: photos to a 3D face", analytics_enabled=False) as app:
        gr.Markdown(
            "## Photos to a 3D face\n"
            f"Drop 1 to {MAX_PHOTOS} photos of **one** face (ideally left, front and right), or a short video "
            "of the head turning, then press **Reconstruct**. Everything runs on this computer."
        )
        with gr.Row():
            with gr.Column(scale=1):
                photos = gr.File(label="photos (1-3)", file_count="multiple", file_types=["image"], elem_id="photos")
                video = gr.Video(label="or a head-turn video", sources=["upload"], elem_id="video")
                button = gr.Button("Reconstruct", variant="primary", elem_id="run")
                summary = gr.Markdown(elem_id="summary")
                errors = gr.Dataframe(headers=["view", "landmark median px"], label="per-view error",
                                      interactive=False, elem_id="errors")
            with gr.Column(scale=2):
                viewer = gr.Model3D(label="3D face (drag to turn)", height=420, elem_id="viewer")
                gr.Markdown("Per view: the photo, the fitted render, the landmarks (blue detected, red fitted); "
                            "then the shape turned both ways and the albedo.")
                # No label: gradio draws it over the image's top, where the sheet has its title.
                sheet = gr.Image(show_label=False, type="filepath", elem_id="sheet")
                downloads = gr.File(label="downloads", file_count="multiple", elem_id="downloads")
        button.click(on_reconstruct, inputs=[photos, video], outputs=[viewer, sheet, errors, summary, downloads],
                     api_name="reconstruct")
    return app


def main(argv=None) -> int:
    parser = make_parser(__doc__.splitlines()[0], "configs/synthetic.yaml", "runs/demo", "demo.py")
    parser.add_argument("--checkpoint", default="", help="trained network checkpoint (network prediction)")
    parser.add_argument("--fit", action="store_true", help="refine the network's prediction by fitting")
    args, cfg = parse_config(parser, argv)
    torch.manual_seed(cfg.train.seed)
    if cfg.fit.num_threads > 0:
        torch.set_num_threads(cfg.fit.num_threads)
    predictor = face_model = None
    if args.checkpoint:
        from models.predictor import load_predictor

        network = load_predictor(args.checkpoint, cfg, "cpu")
        face_model = network.face_model
        morphable = MorphableModel(face_model)
        predictor = lambda prepared: network.predict_views(prepared.target(), morphable)  # noqa: E731
    pipeline = DemoPipeline(cfg, os.path.abspath(args.out), predictor, face_model, args.fit, args.checkpoint)
    app = build_app(pipeline)
    print(f"demo: open http://{cfg.demo.host}:{cfg.demo.port} (results under {args.out})", flush=True)
    app.queue().launch(server_name=cfg.demo.host, server_port=cfg.demo.port, allowed_paths=[pipeline.out],
                       show_error=True, quiet=True)
    return 0


if __name__ == "__main__":
    run(main)
