"""ONNX export of rt_smile's per-frame graphs and (with TensorRT installed) FP16 engines."""
