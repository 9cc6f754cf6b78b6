"""Head-turn videos in: frames read with PyAV, the yaw of each frame from its 68
landmarks, and the sharpest frames nearest the wanted left / front / right yaws
chosen as a subject's views (doc/video.md)."""
from lib.video.reader import VideoFrames, read_frames, write_video
from lib.video.select import FrameInfo, frame_sharpness, pick_views, video_subject

__all__ = ["VideoFrames", "read_frames", "write_video", "FrameInfo", "frame_sharpness", "pick_views", "video_subject"]
