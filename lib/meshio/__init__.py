"""Mesh files: Wavefront OBJ (+ MTL/PNG texture), binary glTF, Stanford PLY and the
NoW submission format, numpy in and out."""
from lib.meshio.glb import write_glb
from lib.meshio.now_submission import write_now_prediction
from lib.meshio.obj import ObjMesh, read_obj, read_obj_vertices, write_obj
from lib.meshio.ply import read_ply, write_ply

__all__ = ["ObjMesh", "read_obj", "read_obj_vertices", "write_obj", "read_ply", "write_ply", "write_glb",
           "write_now_prediction"]
