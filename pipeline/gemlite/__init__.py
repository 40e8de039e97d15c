"""gemlite: teacher -> students (KD + adapter) -> ONNX -> model repository."""
