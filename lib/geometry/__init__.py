"""Small explicit geometry steps: rotation, rigid transform, similarity transforms,
normals, camera."""
from lib.geometry.camera import CAMERA_DISTANCE_MM, focal_length, project
from lib.geometry.normals import face_normals, vertex_normals
from lib.geometry.rotation import euler_to_matrix, matrix_to_euler, rigid_transform
from lib.geometry.similarity import apply_similarity, similarity_transform

__all__ = [
    "CAMERA_DISTANCE_MM",
    "apply_similarity",
    "euler_to_matrix",
    "face_normals",
    "focal_length",
    "matrix_to_euler",
    "project",
    "rigid_transform",
    "similarity_transform",
    "vertex_normals",
]
