"""Mesh files: Wavefront OBJ (+ MTL/PNG texture) and Stanford PLY, numpy in and out."""
from lib.meshio.obj import ObjMesh, read_obj, read_obj_vertices, write_obj
from lib.meshio.ply import read_ply, write_ply

__all__ = ["ObjMesh", "read_obj", "read_obj_vertices", "write_obj", "read_ply", "write_ply"]
