"""Reading (and, for tests and examples, writing) video files with PyAV, which
bundles FFmpeg's libraries in its wheel: any container and codec FFmpeg decodes
(mp4/H.264, mov, webm, avi, ...), no system FFmpeg needed."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from lib.errors import UserError


@dataclass
class VideoFrames:
    """Frames kept from a video: images uint8 [N, H, W, 3] RGB; indices int [N]
    (position of each frame in the stream, from 0); times_s float [N] (seconds from
    the start); fps: the stream's average frame rate; total: frames in the stream."""

    images: np.ndarray
    indices: np.ndarray
    times_s: np.ndarray
    fps: float
    total: int


def read_frames(path: str, max_frames: int) -> VideoFrames:
    """Decode `path` and keep at most `max_frames` frames spread evenly over it,
    turned upright by the video's display rotation.

    The stride comes from the stream's frame count when the container states it,
    else from its duration and rate; every frame is decoded (codecs need the ones in
    between) but only kept ones are converted to RGB. Raises UserError naming the
    file when it is missing, not a video, or holds no frame.
    """
    import av

    if not os.path.isfile(path):
        raise UserError(f"{path}: video file not found")
    try:
        container = av.open(path)
    except av.error.FFmpegError as err:
        raise UserError(f"{path}: not a readable video ({err.strerror or err})") from None
    with container:
        if not container.streams.video:
            raise UserError(f"{path}: holds no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        expected = stream.frames
        if not expected and stream.duration and stream.time_base and fps:
            expected = int(stream.duration * stream.time_base * fps)
        stride = max(1, math.ceil(expected / max_frames)) if expected else 1
        images, indices, times = [], [], []
        count = 0
        try:
            for frame in container.decode(stream):
                if count % stride == 0 and len(images) < max_frames:
                    # Phones store portrait video as landscape frames plus a display
                    # rotation (degrees counter-clockwise); players, and we, apply it.
                    images.append(np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"),
                                                                k=round(frame.rotation / 90) % 4)))
                    indices.append(count)
                    times.append(float(frame.time) if frame.time is not None else count / max(fps, 1e-9))
                count += 1
        except av.error.FFmpegError as err:
            if not images:
                raise UserError(f"{path}: cannot decode the video ({err.strerror or err})") from None
    if not images:
        raise UserError(f"{path}: the video holds no frame")
    return VideoFrames(np.stack(images), np.array(indices), np.array(times), fps, count)


def write_video(path: str, frames: np.ndarray, fps: int, rotation_deg: int = 0) -> None:
    """Write frames uint8 [N, H, W, 3] RGB as an H.264 mp4 (yuv420p, so H and W are
    made even by cropping the last row / column), with a display rotation (degrees
    counter-clockwise, as phones record portrait video). Used to make test videos."""
    import av

    frames = np.asarray(frames)
    height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    with av.open(path, mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "12"}  # near-lossless: the test judges the reader, not the codec
        if rotation_deg:
            stream.set_display_rotation(rotation_deg)
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:height, :width]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
