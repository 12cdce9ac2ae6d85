"""Face2Bone, its ablations and the paper's comparators (docs/methods.md, Model). Entry points:

    from f2b_study.models import create_model, list_models, get_spec, save_checkpoint, load_checkpoint

See registry.py (names, configs, input contract), face2bone.py (the network and the explainability interface),
facenet.py (FaceNet branch and weight provenance) and checkpoint.py (safetensors + JSON sidecar).
"""

from f2b_study.models.checkpoint import load_checkpoint, read_sidecar, save_checkpoint
from f2b_study.models.facenet import facenet_provenance, provenance
from f2b_study.models.registry import ModelSpec, build_architecture, create_model, get_spec, list_models, preprocessing

__all__ = ["ModelSpec", "build_architecture", "create_model", "facenet_provenance", "get_spec", "list_models",
           "load_checkpoint", "preprocessing", "provenance", "read_sidecar", "save_checkpoint"]
