"""Small explicit geometry steps: rotation, rigid transform, normals, camera."""
from lib.geometry.camera import CAMERA_DISTANCE_MM, focal_length, project
from lib.geometry.normals import face_normals, vertex_normals
from lib.geometry.rotation import euler_to_matrix, rigid_transform

__all__ = [
    "CAMERA_DISTANCE_MM",
    "euler_to_matrix",
    "face_normals",
    "focal_length",
    "project",
    "rigid_transform",
    "vertex_normals",
]
